//! What is already running that the policies would refuse: each cached workload judged by each
//! policy alone, with the admission engine, as a CREATE by nobody in particular.
//!
//! The request carries no user: identity rules (the actor cross-check, `exclude`) judge who
//! applies a change, and nobody is applying one. Quarantine is left out for the same reason: it
//! keeps a reverted template from coming back, and the running template is the one reverted to.
//! Signatures are left to admission too: the cache keeps no pod templates to check a subject
//! digest against, and every running revision was verified when it was admitted.

use std::collections::{BTreeMap, HashMap};

use custody_crds::report::{ResultStatus, Severity};
use custody_crds::{AnnotationKey, EnforcementMode, Vocabulary};
use custody_engine::attest::AttestationCache;
use custody_engine::{
    AgentActivity, Context, GroupVersionKind, Outcome, PolicySet, QuarantineIndex, Request,
    TeamIndex, UserInfo, Violation, WorkloadObject, evaluate,
};

use jiff::Timestamp;

use crate::observe::WorkloadState;

/// The rule of a result with no violation.
pub const COMPLIANT_RULE: &str = "Compliant";

/// One policy's verdict on one workload, for one rule (a violation code) or for all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The workload.
    pub workload: WorkloadId,
    /// The policy.
    pub policy: String,
    /// The violation code, or [`COMPLIANT_RULE`].
    pub rule: String,
    /// Pass, fail, warn or skip.
    pub result: ResultStatus,
    /// How much it matters: by the policy's mode.
    pub severity: Severity,
    /// What is wrong and how to fix it, or why it was not judged.
    pub message: String,
    /// Actor, agent, source-commit and owner, as declared; for a running revision an approved
    /// change request admitted, the request and its approvers ([`super::approved`]).
    pub properties: BTreeMap<String, String>,
}

/// A workload a finding is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId {
    /// Its namespace.
    pub namespace: String,
    /// Its kind.
    pub kind: custody_crds::WorkloadKind,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
}

/// The provenance and ownership keys every finding carries, when declared.
const PROPERTIES: [AnnotationKey; 4] = [
    AnnotationKey::Actor,
    AnnotationKey::Agent,
    AnnotationKey::SourceCommit,
    AnnotationKey::Owner,
];

/// Judges `workloads` by each of `policies` alone. `namespace_labels` are the labels of each
/// namespace, when known. Findings come out in the workloads' order, then by policy.
pub fn audit(
    policies: &PolicySet,
    vocabulary: &Vocabulary,
    namespace_labels: &HashMap<String, BTreeMap<String, String>>,
    workloads: &[WorkloadState],
    teams: &TeamIndex,
    now: Timestamp,
) -> Vec<Finding> {
    let singles = policies.singles();
    let quarantine = QuarantineIndex::default();
    let attestations = AttestationCache::default();
    let mut findings = Vec::new();
    for workload in workloads {
        let ctx = Context {
            vocabulary,
            namespace_labels: namespace_labels.get(&workload.namespace),
            quarantine: &quarantine,
            now,
            attestations: &attestations,
            teams,
            // Freezes judge changes; the audit judges what runs.
            background: true,
            activity: &AgentActivity::default(),
            changes: &custody_engine::ChangeIndex::default(),
        };
        judge(&singles, &ctx, workload, &mut findings);
    }
    findings
}

fn judge(
    singles: &[PolicySet],
    ctx: &Context<'_>,
    workload: &WorkloadState,
    findings: &mut Vec<Finding>,
) {
    let id = WorkloadId {
        namespace: workload.namespace.clone(),
        kind: workload.kind,
        name: workload.name.clone(),
        uid: workload.uid.clone(),
    };
    let properties: BTreeMap<String, String> = PROPERTIES
        .iter()
        .filter_map(|k| {
            let value = workload.annotations.get(ctx.vocabulary.key(*k))?;
            Some((k.as_str().to_string(), value.clone()))
        })
        .collect();
    let object = serde_json::json!({
        "apiVersion": format!("{}/v1", workload.kind.group()),
        "kind": workload.kind.as_str(),
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": workload.labels,
            "annotations": workload.annotations,
        },
    });
    let Ok(raw) = serde_json::value::to_raw_value(&object) else {
        return;
    };
    let Ok(view) = WorkloadObject::parse(&raw) else {
        return;
    };
    let request = Request::create(
        GroupVersionKind::new(workload.kind.group(), "v1", workload.kind.as_str()),
        Some(&workload.namespace),
        &workload.name,
        UserInfo::default(),
        view,
    );
    for single in singles {
        let Some(policy) = single.iter().next() else {
            continue;
        };
        let decision = evaluate(single, &request, ctx);
        let finding = |rule: &str, result, severity, message: String| Finding {
            workload: id.clone(),
            policy: policy.name.clone(),
            rule: rule.to_string(),
            result,
            severity,
            message,
            properties: properties.clone(),
        };
        if decision.outcome == Outcome::Skipped {
            continue;
        }
        if !workload.managed_by.is_empty() {
            findings.push(finding(
                COMPLIANT_RULE,
                ResultStatus::Skip,
                Severity::Info,
                format!(
                    "managed by {}: judged when its owner's controller writes it",
                    workload.managed_by
                ),
            ));
            continue;
        }
        let violations: Vec<&Violation> = decision
            .violations
            .iter()
            .filter(|v| !v.code.is_signature())
            .collect();
        if violations.is_empty() {
            findings.push(finding(
                COMPLIANT_RULE,
                ResultStatus::Pass,
                Severity::Info,
                "provenance and ownership meet the policy".to_string(),
            ));
            continue;
        }
        for (code, violations) in by_code(&violations) {
            let (result, severity) = verdict(policy.spec.mode);
            let message = violations
                .iter()
                .map(|v| v.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            findings.push(finding(code, result, severity, message));
        }
    }
}

/// Violations grouped by code, codes in their fixed order.
fn by_code<'v>(violations: &[&'v Violation]) -> BTreeMap<&'static str, Vec<&'v Violation>> {
    let mut out: BTreeMap<&'static str, Vec<&Violation>> = BTreeMap::new();
    for v in violations {
        out.entry(v.code.as_str()).or_default().push(*v);
    }
    out
}

/// A violation's result and severity by the policy's mode: what Enforce would deny fails with
/// high severity, what Warn would warn about warns, what Audit records fails with low severity
/// (as other engines report an audit-only policy's violations).
pub const fn verdict(mode: EnforcementMode) -> (ResultStatus, Severity) {
    match mode {
        EnforcementMode::Enforce => (ResultStatus::Fail, Severity::High),
        EnforcementMode::Warn => (ResultStatus::Warn, Severity::Medium),
        EnforcementMode::Audit => (ResultStatus::Fail, Severity::Low),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::CustodyPolicy;

    fn policy(name: &str, yaml_spec: &str) -> CustodyPolicy {
        let spec = serde_saphyr::from_str(yaml_spec).unwrap();
        CustodyPolicy::new(name, spec)
    }

    fn workload(name: &str, annotations: &[(&str, &str)]) -> WorkloadState {
        WorkloadState {
            name: name.into(),
            uid: format!("uid-{name}"),
            annotations: annotations
                .iter()
                .map(|(k, v)| (format!("custody.dev/{k}"), v.to_string()))
                .collect(),
            any_annotations: !annotations.is_empty(),
            ..WorkloadState::sample("")
        }
    }

    const HUMAN: &[(&str, &str)] = &[
        ("actor", "human"),
        ("source-repo", "https://github.com/acme/shop"),
        ("source-commit", "0123abc"),
        ("owner", "payments"),
        ("oncall", "@payments"),
    ];

    fn run(policies: Vec<CustodyPolicy>, workloads: &[WorkloadState]) -> Vec<Finding> {
        run_at(
            policies,
            workloads,
            &TeamIndex::default(),
            Timestamp::UNIX_EPOCH,
        )
    }

    fn run_at(
        policies: Vec<CustodyPolicy>,
        workloads: &[WorkloadState],
        teams: &TeamIndex,
        now: Timestamp,
    ) -> Vec<Finding> {
        let (set, errors) = PolicySet::compile(policies);
        assert!(errors.is_empty(), "{errors:?}");
        audit(
            &set,
            &Vocabulary::default(),
            &HashMap::new(),
            workloads,
            teams,
            now,
        )
    }

    #[test]
    fn registered_owners_are_judged_and_freezes_are_not() {
        let registered = policy(
            "registered",
            "ownership: Registered\nfreezes:\n- name: always\n  start: \"2000-01-01T00:00:00Z\"\n  end: \"2999-01-01T00:00:00Z\"\n  actors: [agent, automation, human]\n",
        );
        let team = custody_crds::CustodyTeam::new(
            "payments",
            serde_saphyr::from_str("namespaces: [shop]\n").unwrap(),
        );
        let (teams, errors) = TeamIndex::compile([&team]);
        assert!(errors.is_empty());
        let mut stranger = HUMAN.to_vec();
        stranger[3] = ("owner", "growth");
        let found = run_at(
            vec![registered],
            &[workload("web", HUMAN), workload("ads", &stranger)],
            &teams,
            Timestamp::from_second(1_800_000_000).unwrap(),
        );
        assert_eq!(
            summary(&found),
            [
                "web registered Compliant pass Info",
                "ads registered OwnerNotRegistered fail High",
            ]
        );
    }

    fn summary(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {} {} {:?}",
                    f.workload.name,
                    f.policy,
                    f.rule,
                    f.result.as_str(),
                    f.severity
                )
            })
            .collect()
    }

    #[test]
    fn each_policy_reports_its_own_verdict() {
        let strict = policy("strict", "mode: Enforce\n");
        let advisory = policy("advisory", "mode: Warn\nannotations:\n- key: model\n");
        let found = run(
            vec![strict, advisory],
            &[workload("ok", HUMAN), workload("bare", &[])],
        );
        assert_eq!(
            summary(&found),
            [
                "ok advisory MissingAnnotation warn Medium",
                "ok strict Compliant pass Info",
                "bare advisory MissingAnnotation warn Medium",
                "bare strict MissingAnnotation fail High",
            ]
        );
        let bare = &found[3];
        assert!(
            bare.message.contains("custody.dev/owner"),
            "{}",
            bare.message
        );
        assert!(found[1].properties.contains_key("owner"));
        assert_eq!(
            found[1].properties.get("actor").map(String::as_str),
            Some("human")
        );
        assert!(found[3].properties.is_empty());
    }

    #[test]
    fn audit_mode_fails_with_low_severity_and_bad_values_get_their_own_rule() {
        let audit_only = policy("audit-only", "mode: Audit\n");
        let mut bad = HUMAN.to_vec();
        bad.retain(|(k, _)| *k != "owner");
        bad.push(("source-commit", "not-hex"));
        let found = run(vec![audit_only], &[workload("web", &bad)]);
        assert_eq!(
            summary(&found),
            [
                "web audit-only InvalidValue fail Low",
                "web audit-only MissingAnnotation fail Low",
            ]
        );
    }

    #[test]
    fn a_workload_an_operator_owns_is_skipped_and_unselected_ones_are_absent() {
        let scoped = policy(
            "scoped",
            "mode: Enforce\nmatch:\n  namespaces:\n    include: [shop]\n",
        );
        let elsewhere = policy(
            "elsewhere",
            "mode: Enforce\nmatch:\n  namespaces:\n    include: [other]\n",
        );
        let mut owned = workload("operated", &[]);
        owned.managed_by = "Rollout/operated".into();
        let found = run(vec![scoped, elsewhere], &[owned]);
        assert_eq!(summary(&found), ["operated scoped Compliant skip Info"]);
        assert!(found[0].message.contains("Rollout/operated"));
    }
}
