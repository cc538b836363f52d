//! Compiling CustodyPolicies: every check a policy must pass, and the compiled form the engine
//! evaluates (regexes built once, not per request).
//!
//! The same checks answer the CustodyPolicy admission path, so a bad policy is refused when it
//! is applied rather than discovered when a workload hits it.

use std::collections::BTreeSet;
use std::fmt;

use custody_crds::attestation::CompiledKey;
use custody_crds::policy::BUILTIN_POLICY_NAME;
use custody_crds::selection::{Target, check_label_selector};
use custody_crds::{AnnotationKey, AnnotationRule, CustodyPolicy, CustodyPolicySpec, IdentitySet};
use regex::Regex;

use crate::approval::CompiledApproval;
use crate::controllers::ControllerWrite;
use crate::freeze_window::CompiledFreeze;
use crate::identity::identity_matches;
use crate::limits::CompiledLimit;
use crate::policy_ref::PolicyRef;
use crate::probation::CompiledProbation;

/// Patterns are user input evaluated on every admission: bound their compiled size.
const PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// A policy that failed its checks, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    /// The policy's name.
    pub policy: String,
    /// One sentence per problem, naming the field.
    pub problems: Vec<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CustodyPolicy {:?} is invalid: {}",
            self.policy,
            self.problems.join("; ")
        )
    }
}

/// An annotation rule with its pattern compiled.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    /// The rule as written.
    pub rule: AnnotationRule,
    /// Its pattern, compiled.
    pub pattern: Option<Regex>,
}

/// A policy ready to evaluate.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    /// The policy's name.
    pub name: String,
    /// Its spec.
    pub spec: CustodyPolicySpec,
    /// Its annotation rules, compiled.
    pub rules: Vec<CompiledRule>,
    /// Its trusted signing keys, parsed (empty without `spec.signatures`).
    pub keys: Vec<CompiledKey>,
    /// Its change freezes, parsed.
    pub freezes: Vec<CompiledFreeze>,
    /// Its agents' probation, parsed.
    pub probation: Option<CompiledProbation>,
    /// Its agents' budgets, parsed.
    pub limits: Vec<CompiledLimit>,
    /// Its approval requirement, parsed.
    pub approval: Option<CompiledApproval>,
}

impl CompiledPolicy {
    /// Its name and spec, as the rules quote them.
    pub(crate) fn head(&self) -> PolicyRef<'_> {
        PolicyRef {
            name: &self.name,
            spec: &self.spec,
        }
    }

    /// Checks and compiles a policy.
    pub fn compile(policy: &CustodyPolicy) -> Result<Self, PolicyError> {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let mut problems = Vec::new();
        if name.is_empty() {
            problems.push("metadata.name is empty".to_string());
        }
        let rules = check_rules(&policy.spec.annotations, &mut problems);
        check_selectors(&policy.spec, &mut problems);
        check_identities("exclude", &policy.spec.exclude, &mut problems);
        check_identities(
            "identities.agents",
            &policy.spec.identities.agents,
            &mut problems,
        );
        check_identities(
            "identities.delivery",
            &policy.spec.identities.delivery,
            &mut problems,
        );
        check_identities(
            "identities.controllers",
            &policy.spec.identities.controllers,
            &mut problems,
        );
        check_controllers(&policy.spec.identities.controllers, &mut problems);
        check_rollback(&policy.spec, &mut problems);
        let keys = crate::signatures::compile_keys(&policy.spec, &mut problems);
        let freezes = compile_freezes(&policy.spec, &mut problems);
        let probation = policy
            .spec
            .agents
            .probation
            .as_ref()
            .and_then(|p| CompiledProbation::compile(p, &mut problems));
        let limits: Vec<CompiledLimit> = policy
            .spec
            .agents
            .limits
            .iter()
            .enumerate()
            .filter_map(|(i, l)| CompiledLimit::compile(i, l, &mut problems))
            .collect();
        let approval = policy
            .spec
            .agents
            .approval
            .as_ref()
            .and_then(|a| CompiledApproval::compile(a, &mut problems));
        if problems.is_empty() {
            Ok(Self {
                name,
                spec: policy.spec.clone(),
                rules,
                keys,
                freezes,
                probation,
                limits,
                approval,
            })
        } else {
            Err(PolicyError {
                policy: name,
                problems,
            })
        }
    }
}

fn compile_freezes(spec: &CustodyPolicySpec, problems: &mut Vec<String>) -> Vec<CompiledFreeze> {
    let mut names = BTreeSet::new();
    let mut compiled = Vec::new();
    for (i, window) in spec.freezes.iter().enumerate() {
        if !names.insert(window.name.as_str()) {
            problems.push(format!(
                "spec.freezes[{i}]: the name {:?} is used twice; give each window its own",
                window.name
            ));
        }
        compiled.extend(CompiledFreeze::compile(i, window, problems));
    }
    compiled
}

fn check_rules(rules: &[AnnotationRule], problems: &mut Vec<String>) -> Vec<CompiledRule> {
    let mut seen = BTreeSet::new();
    let mut compiled = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("spec.annotations[{i}] ({})", rule.key);
        if !seen.insert(rule.key) {
            problems.push(format!(
                "{at}: key {} has more than one rule; merge them",
                rule.key
            ));
        }
        if rule.key == AnnotationKey::Actor && !rule.when_actor.is_empty() {
            problems.push(format!(
                "{at}: whenActor cannot apply to the actor key itself"
            ));
        }
        if rule.key == AnnotationKey::QuarantineOverride && rule.required {
            problems.push(format!(
                "{at}: quarantine-override cannot be required; it is set by a human only to re-admit a reverted template"
            ));
        }
        if rule.key == AnnotationKey::BreakGlass && rule.required {
            problems.push(format!(
                "{at}: break-glass cannot be required; a person sets it only to ship during a change freeze"
            ));
        }
        let pattern = rule.pattern.as_deref().and_then(|p| {
            match regex::RegexBuilder::new(p)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Some(re),
                Err(error) => {
                    problems.push(format!(
                        "{at}: pattern {p:?} is not a valid regular expression: {error}"
                    ));
                    None
                }
            }
        });
        for value in &rule.allowed_values {
            if let Err(error) = rule.key.check_builtin_format(value) {
                problems.push(format!(
                    "{at}: allowed value {value:?} can never be accepted ({error})"
                ));
            }
            if let Some(re) = &pattern
                && !re.is_match(value)
            {
                problems.push(format!(
                    "{at}: allowed value {value:?} does not match the rule's own pattern"
                ));
            }
        }
        if let Some(example) = &rule.example {
            let bad_format = rule.key.check_builtin_format(example).is_err();
            let bad_pattern = pattern.as_ref().is_some_and(|re| !re.is_match(example));
            if bad_format || bad_pattern {
                problems.push(format!(
                    "{at}: example {example:?} does not satisfy the rule itself"
                ));
            }
        }
        compiled.push(CompiledRule {
            rule: rule.clone(),
            pattern,
        });
    }
    compiled
}

fn check_selectors(spec: &CustodyPolicySpec, problems: &mut Vec<String>) {
    let rules = &spec.match_rules;
    for (field, globs) in [
        ("spec.match.namespaces.include", &rules.namespaces.include),
        ("spec.match.namespaces.exclude", &rules.namespaces.exclude),
    ] {
        if globs.iter().any(|g| g.trim().is_empty()) {
            problems.push(format!(
                "{field}: an empty pattern matches nothing; remove it"
            ));
        }
    }
    if let Some(selector) = &rules.namespace_selector {
        check_label_selector("spec.match.namespaceSelector", selector, problems);
        for expr in selector.match_expressions.iter().flatten() {
            if matches!(expr.operator.as_str(), "NotIn" | "DoesNotExist") {
                problems.push(format!(
                    "spec.match.namespaceSelector: operator {} on {:?} would let anyone who can label a namespace exempt it; list exemptions in spec.match.namespaces.exclude instead",
                    expr.operator, expr.key
                ));
            }
        }
    }
    if let Some(selector) = &rules.object_selector {
        check_label_selector("spec.match.objectSelector", selector, problems);
    }
}

fn check_identities(field: &str, set: &IdentitySet, problems: &mut Vec<String>) {
    for sa in &set.service_accounts {
        let valid = sa
            .split_once('/')
            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'));
        if !valid {
            problems.push(format!(
                "spec.{field}.serviceAccounts: {sa:?} must be namespace/name (globs allowed, e.g. agents/*)"
            ));
        }
    }
    for (kind, list) in [("users", &set.users), ("groups", &set.groups)] {
        if list.iter().any(|p| p.trim().is_empty()) {
            problems.push(format!(
                "spec.{field}.{kind}: an empty pattern matches nothing; remove it"
            ));
        }
    }
}

/// Groups every requester of a kind belongs to: naming one as a controller would let anyone
/// skip judgement by writing an ownerReference, which is what the identity check prevents.
const EVERYONE_GROUPS: [&str; 3] = [
    "system:authenticated",
    "system:unauthenticated",
    "system:serviceaccounts",
];

fn check_controllers(set: &IdentitySet, problems: &mut Vec<String>) {
    let everyone = |p: &str| !p.is_empty() && p.chars().all(|c| c == '*');
    let mut broad: Vec<String> = Vec::new();
    broad.extend(
        set.users
            .iter()
            .filter(|p| everyone(p))
            .map(|p| format!("users {p:?}")),
    );
    broad.extend(
        set.groups
            .iter()
            .filter(|p| everyone(p) || EVERYONE_GROUPS.contains(&p.as_str()))
            .map(|p| format!("groups {p:?}")),
    );
    broad.extend(
        set.service_accounts
            .iter()
            .filter(|p| {
                p.split_once('/')
                    .is_some_and(|(ns, name)| everyone(ns) && everyone(name))
            })
            .map(|p| format!("serviceAccounts {p:?}")),
    );
    for entry in broad {
        problems.push(format!(
            "spec.identities.controllers: {entry} names every requester, so anyone could skip judgement by writing an ownerReference; name the controllers themselves (e.g. serviceAccounts: argo-rollouts/argo-rollouts)"
        ));
    }
}

fn check_rollback(spec: &CustodyPolicySpec, problems: &mut Vec<String>) {
    let r = &spec.rollback;
    if r.restart_threshold == 0 {
        problems.push("spec.rollback.restartThreshold must be at least 1".to_string());
    }
    if r.not_ready_seconds == 0 || r.image_pull_seconds == 0 {
        problems.push(
            "spec.rollback.notReadySeconds and imagePullSeconds must be at least 1".to_string(),
        );
    }
    for (i, target) in r.notify.iter().enumerate() {
        problems.extend(target.problems(&format!("spec.rollback.notify[{i}]")));
    }
    if let Some(url) = &r.notify_url
        && !custody_crds::notify::is_http_url(url)
    {
        problems.push(format!(
            "spec.rollback.notifyUrl {url:?} must be an http(s) URL"
        ));
    }
    if let Some(analysis) = &r.analysis {
        problems.extend(
            analysis
                .problems()
                .into_iter()
                .map(|p| format!("spec.rollback.{p}")),
        );
    }
}

/// The compiled policies in force, sorted by name.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
}

impl PolicySet {
    /// Compiles policies. Invalid ones are left out and returned with their problems, so one bad
    /// policy never disables the others.
    pub fn compile(policies: impl IntoIterator<Item = CustodyPolicy>) -> (Self, Vec<PolicyError>) {
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        for policy in policies {
            match CompiledPolicy::compile(&policy) {
                Ok(p) => compiled.push(p),
                Err(e) => errors.push(e),
            }
        }
        compiled.sort_by(|a, b| a.name.cmp(&b.name));
        (Self { policies: compiled }, errors)
    }

    /// The built-in default policy alone.
    pub fn builtin_default() -> Self {
        let (set, errors) = Self::compile([CustodyPolicy::builtin_default()]);
        debug_assert!(
            errors.is_empty(),
            "the built-in policy is valid: {errors:?}"
        );
        debug_assert_eq!(
            set.policies.first().map(|p| p.name.as_str()),
            Some(BUILTIN_POLICY_NAME)
        );
        set
    }

    /// How many policies are in force.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether no policy is in force.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The policies, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &CompiledPolicy> {
        self.policies.iter()
    }

    /// One set per policy, so that each can be judged alone: [`evaluate`](crate::evaluate)
    /// merges the violations of every selecting policy, and the background audit reports each
    /// policy's own result.
    pub fn singles(&self) -> Vec<PolicySet> {
        self.policies
            .iter()
            .map(|p| PolicySet {
                policies: vec![p.clone()],
            })
            .collect()
    }

    /// The policies that select `target`, do not exclude the requester, and do not name it as
    /// a controller writing an object it owns.
    pub fn selecting<'s>(
        &'s self,
        target: &Target<'_>,
        username: &str,
        groups: &[impl AsRef<str>],
        ownership: ControllerWrite,
    ) -> Vec<&'s CompiledPolicy> {
        self.policies
            .iter()
            .filter(|p| {
                p.spec.selects(target)
                    && !identity_matches(&p.spec.exclude, username, groups)
                    && !ownership.is_controller_write(
                        &p.spec.identities.controllers,
                        username,
                        groups,
                    )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::{IdentitySet, MatchRules};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn policy(spec: CustodyPolicySpec) -> CustodyPolicy {
        CustodyPolicy::new("p", spec)
    }

    fn problems(spec: CustodyPolicySpec) -> Vec<String> {
        CompiledPolicy::compile(&policy(spec))
            .err()
            .map(|e| e.problems)
            .unwrap_or_default()
    }

    fn rule(key: AnnotationKey) -> AnnotationRule {
        AnnotationRule {
            key,
            ..AnnotationRule::default()
        }
    }

    #[test]
    fn the_builtin_policy_is_valid() {
        assert_eq!(PolicySet::builtin_default().len(), 1);
        assert!(problems(CustodyPolicySpec::default()).is_empty());
    }

    #[test]
    fn invalid_policies_name_every_problem() {
        let cases: Vec<(&str, CustodyPolicySpec, &str)> = vec![
            (
                "bad regex",
                CustodyPolicySpec {
                    annotations: vec![AnnotationRule {
                        pattern: Some("^(team-".into()),
                        ..rule(AnnotationKey::Owner)
                    }],
                    ..Default::default()
                },
                "not a valid regular expression",
            ),
            (
                "duplicate key",
                CustodyPolicySpec {
                    annotations: vec![rule(AnnotationKey::Owner), rule(AnnotationKey::Owner)],
                    ..Default::default()
                },
                "more than one rule",
            ),
            (
                "impossible allowed value",
                CustodyPolicySpec {
                    annotations: vec![AnnotationRule {
                        allowed_values: vec!["robot".into()],
                        ..rule(AnnotationKey::Actor)
                    }],
                    ..Default::default()
                },
                "can never be accepted",
            ),
            (
                "required override",
                CustodyPolicySpec {
                    annotations: vec![rule(AnnotationKey::QuarantineOverride)],
                    ..Default::default()
                },
                "cannot be required",
            ),
            (
                "namespace label exemption",
                CustodyPolicySpec {
                    match_rules: MatchRules {
                        namespace_selector: Some(LabelSelector {
                            match_expressions: Some(vec![LabelSelectorRequirement {
                                key: "custody.dev/exempt".into(),
                                operator: "DoesNotExist".into(),
                                values: None,
                            }]),
                            match_labels: None,
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "spec.match.namespaces.exclude instead",
            ),
            (
                "unknown operator",
                CustodyPolicySpec {
                    match_rules: MatchRules {
                        object_selector: Some(LabelSelector {
                            match_expressions: Some(vec![LabelSelectorRequirement {
                                key: "tier".into(),
                                operator: "Like".into(),
                                values: Some(vec!["web".into()]),
                            }]),
                            match_labels: None,
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "unknown operator",
            ),
            (
                "service account without namespace",
                CustodyPolicySpec {
                    exclude: IdentitySet {
                        service_accounts: vec!["argocd".into()],
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "must be namespace/name",
            ),
            (
                "every requester named as a controller",
                CustodyPolicySpec {
                    identities: custody_crds::Identities {
                        controllers: IdentitySet {
                            groups: vec!["system:authenticated".into()],
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "anyone could skip judgement by writing an ownerReference",
            ),
            (
                "every service account named as a controller",
                CustodyPolicySpec {
                    identities: custody_crds::Identities {
                        controllers: IdentitySet {
                            service_accounts: vec!["*/*".into()],
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "serviceAccounts \"*/*\" names every requester",
            ),
            (
                "zero restart threshold",
                CustodyPolicySpec {
                    rollback: custody_crds::RollbackSettings {
                        restart_threshold: 0,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "restartThreshold",
            ),
        ];
        for (name, spec, expected) in cases {
            let found = problems(spec);
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{name}: expected a problem containing {expected:?}, got {found:?}"
            );
        }
    }

    #[test]
    fn a_bad_policy_does_not_disable_the_others() {
        let bad = CustodyPolicy::new(
            "bad",
            CustodyPolicySpec {
                annotations: vec![AnnotationRule {
                    pattern: Some("(".into()),
                    ..rule(AnnotationKey::Owner)
                }],
                ..Default::default()
            },
        );
        let good = CustodyPolicy::new("good", CustodyPolicySpec::default());
        let (set, errors) = PolicySet::compile([bad, good]);
        assert_eq!(set.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].policy, "bad");
        assert!(
            errors[0]
                .to_string()
                .contains("CustodyPolicy \"bad\" is invalid")
        );
    }

    #[test]
    fn identities() {
        let set = IdentitySet {
            users: vec!["ci-*@acme.dev".into()],
            groups: vec!["agents:*".into()],
            service_accounts: vec![
                "argocd/argocd-application-controller".into(),
                "bots/*".into(),
            ],
        };
        let none: [&str; 0] = [];
        assert!(identity_matches(&set, "ci-bot@acme.dev", &none));
        assert!(!identity_matches(&set, "jane@acme.dev", &none));
        assert!(identity_matches(&set, "jane@acme.dev", &["agents:claude"]));
        assert!(identity_matches(
            &set,
            "system:serviceaccount:argocd:argocd-application-controller",
            &none
        ));
        assert!(identity_matches(
            &set,
            "system:serviceaccount:bots:renovate",
            &none
        ));
        assert!(!identity_matches(
            &set,
            "system:serviceaccount:argocd:argocd-server",
            &none
        ));
        assert!(!identity_matches(
            &set,
            "system:serviceaccount:malformed",
            &none
        ));
    }
}
