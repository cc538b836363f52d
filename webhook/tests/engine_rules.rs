//! Table-driven tests of every admission rule, each case named after the situation it models and
//! asserting why a request was (or was not) denied.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod support;

use custody_crds::{
    Actor, AnnotationKey, AnnotationRule, CustodyPolicy, CustodyPolicySpec, EnforcementMode,
    FailurePolicy, Identities, IdentitySet, MatchRules, NamespaceMatch, RecordAction,
    RevisionSnapshot, RollbackRecord, RollbackRecordSpec, SignalReason, WorkloadKind, WorkloadRef,
};
use custody_engine::{
    Context, Outcome, PolicySet, QuarantineIndex, ViolationCode, evaluate, validate_policy,
};
use custody_webhook::review;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use serde_json::{Value, json};
use support::*;

fn policies(specs: Vec<(&str, CustodyPolicySpec)>) -> PolicySet {
    let (set, errors) =
        PolicySet::compile(specs.into_iter().map(|(n, s)| CustodyPolicy::new(n, s)));
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn codes(decision: &custody_engine::Decision) -> Vec<ViolationCode> {
    decision.violations.iter().map(|v| v.code).collect()
}

fn without(key: &str) -> Value {
    let mut a = agent_annotations();
    a.as_object_mut().unwrap().remove(key);
    a
}

fn with(key: &str, value: &str) -> Value {
    let mut a = agent_annotations();
    a[key] = json!(value);
    a
}

#[test]
fn annotation_rules() {
    let strict = CustodyPolicySpec {
        annotations: vec![
            AnnotationRule {
                key: AnnotationKey::Actor,
                ..Default::default()
            },
            AnnotationRule {
                key: AnnotationKey::Agent,
                when_actor: vec![Actor::Agent],
                ..Default::default()
            },
            AnnotationRule {
                key: AnnotationKey::Owner,
                pattern: Some("^team-[a-z]+$".into()),
                ..Default::default()
            },
            AnnotationRule {
                key: AnnotationKey::Rollback,
                required: false,
                allowed_values: vec!["auto".into(), "alert".into()],
                ..Default::default()
            },
            AnnotationRule {
                key: AnnotationKey::Model,
                required: false,
                pattern: Some("^claude-".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let set = policies(vec![("strict", strict)]);
    let cases: Vec<(&str, Value, Vec<ViolationCode>)> = vec![
        (
            "complete agent provenance passes",
            agent_annotations(),
            vec![],
        ),
        (
            "agent without agent name",
            without("custody.dev/agent"),
            vec![ViolationCode::MissingAnnotation],
        ),
        (
            "human without agent name is fine",
            {
                let mut a = with("custody.dev/actor", "human");
                a.as_object_mut().unwrap().remove("custody.dev/agent");
                a
            },
            vec![],
        ),
        (
            "unknown actor word",
            with("custody.dev/actor", "robot"),
            vec![ViolationCode::InvalidValue],
        ),
        (
            "blank actor",
            with("custody.dev/actor", "  "),
            vec![ViolationCode::InvalidValue],
        ),
        (
            "owner breaks the pattern",
            with("custody.dev/owner", "Payments"),
            vec![ViolationCode::PatternMismatch],
        ),
        (
            "rollback outside allowed values",
            with("custody.dev/rollback", "unsafe"),
            vec![ViolationCode::ValueNotAllowed],
        ),
        (
            "rollback not a rollback word",
            with("custody.dev/rollback", "never"),
            vec![ViolationCode::InvalidValue],
        ),
        ("optional model absent is fine", agent_annotations(), vec![]),
        (
            "optional model present is checked",
            with("custody.dev/model", "gpt-x"),
            vec![ViolationCode::PatternMismatch],
        ),
        (
            "optional rollback allowed value",
            with("custody.dev/rollback", "alert"),
            vec![],
        ),
    ];
    for (name, annotations, expected) in cases {
        let body = review_of(
            "CREATE",
            &deployment("web", annotations, "web:1"),
            None,
            "jane",
            &[],
        );
        let d = judge_with(&body, &set, &QuarantineIndex::default());
        assert_eq!(codes(&d), expected, "{name}: {:?}", d.message);
        assert_eq!(d.allowed, expected.is_empty(), "{name}");
    }
}

#[test]
fn modes_decide_how_violations_are_answered() {
    let body = review_of(
        "CREATE",
        &deployment("web", without("custody.dev/owner"), "web:1"),
        None,
        "jane",
        &[],
    );
    let cases = [
        (EnforcementMode::Enforce, false, Outcome::Denied, 0),
        (EnforcementMode::Warn, true, Outcome::Warned, 1),
        (EnforcementMode::Audit, true, Outcome::Audited, 0),
    ];
    for (mode, allowed, outcome, warnings) in cases {
        let set = policies(vec![(
            "p",
            CustodyPolicySpec {
                mode,
                ..Default::default()
            },
        )]);
        let d = judge_with(&body, &set, &QuarantineIndex::default());
        assert_eq!(
            (d.allowed, d.outcome, d.warnings.len()),
            (allowed, outcome, warnings),
            "{mode}"
        );
        let audit = d
            .audit_annotations
            .get("violations")
            .expect("violations are always audited");
        assert!(audit.contains("custody.dev/owner"), "{mode}: {audit}");
        if mode == EnforcementMode::Warn {
            assert!(
                d.warnings[0].contains("custody.dev/owner is missing"),
                "{:?}",
                d.warnings
            );
        }
    }
}

#[test]
fn the_strictest_policy_wins_and_violations_are_not_repeated() {
    let set = policies(vec![
        (
            "audit-all",
            CustodyPolicySpec {
                mode: EnforcementMode::Audit,
                ..Default::default()
            },
        ),
        ("enforce-all", CustodyPolicySpec::default()),
    ]);
    let body = review_of(
        "CREATE",
        &deployment("web", without("custody.dev/owner"), "web:1"),
        None,
        "jane",
        &[],
    );
    let d = judge_with(&body, &set, &QuarantineIndex::default());
    assert!(!d.allowed);
    assert_eq!(d.violations.len(), 1);
    assert_eq!(d.violations[0].policy, "enforce-all");
    assert_eq!(d.audit_annotations["policies"], "enforce-all,audit-all");
}

#[test]
fn matching() {
    let labels = |pairs: &[(&str, &str)]| {
        Some(LabelSelector {
            match_labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            match_expressions: None,
        })
    };
    let cases: Vec<(&str, MatchRules, IdentitySet, &str, bool)> = vec![
        (
            "all kinds by default",
            MatchRules::default(),
            IdentitySet::default(),
            "jane",
            true,
        ),
        (
            "another kind only",
            MatchRules {
                kinds: vec![WorkloadKind::Job],
                ..Default::default()
            },
            IdentitySet::default(),
            "jane",
            false,
        ),
        (
            "namespace included by glob",
            MatchRules {
                namespaces: NamespaceMatch {
                    include: vec!["sh*".into()],
                    exclude: vec![],
                },
                ..Default::default()
            },
            IdentitySet::default(),
            "jane",
            true,
        ),
        (
            "namespace excluded by name",
            MatchRules {
                namespaces: NamespaceMatch {
                    include: vec![],
                    exclude: vec!["shop".into()],
                },
                ..Default::default()
            },
            IdentitySet::default(),
            "jane",
            false,
        ),
        (
            "namespace selector on the always-present name label",
            MatchRules {
                namespace_selector: labels(&[("kubernetes.io/metadata.name", "shop")]),
                ..Default::default()
            },
            IdentitySet::default(),
            "jane",
            true,
        ),
        (
            "namespace selector not matching",
            MatchRules {
                namespace_selector: labels(&[("env", "prod")]),
                ..Default::default()
            },
            IdentitySet::default(),
            "jane",
            false,
        ),
        (
            "object selector matching",
            MatchRules {
                object_selector: labels(&[("app", "web")]),
                ..Default::default()
            },
            IdentitySet::default(),
            "jane",
            true,
        ),
        (
            "object selector not matching",
            MatchRules {
                object_selector: labels(&[("app", "db")]),
                ..Default::default()
            },
            IdentitySet::default(),
            "jane",
            false,
        ),
        (
            "excluded user",
            MatchRules::default(),
            IdentitySet {
                users: vec!["break-glass-*".into()],
                ..Default::default()
            },
            "break-glass-ann",
            false,
        ),
        (
            "excluded group",
            MatchRules::default(),
            IdentitySet {
                groups: vec!["system:masters".into()],
                ..Default::default()
            },
            "jane",
            false,
        ),
        (
            "excluded service account",
            MatchRules::default(),
            IdentitySet {
                service_accounts: vec!["ops/*".into()],
                ..Default::default()
            },
            "system:serviceaccount:ops:janitor",
            false,
        ),
    ];
    for (name, match_rules, exclude, user, judged) in cases {
        let set = policies(vec![(
            "p",
            CustodyPolicySpec {
                match_rules,
                exclude,
                ..Default::default()
            },
        )]);
        let groups: &[&str] = if user == "jane" && name == "excluded group" {
            &["system:masters"]
        } else {
            &[]
        };
        let body = review_of(
            "CREATE",
            &deployment("web", json!({}), "web:1"),
            None,
            user,
            groups,
        );
        let d = judge_with(&body, &set, &QuarantineIndex::default());
        assert_eq!(!d.allowed, judged, "{name}: {d:?}");
        if !judged {
            assert_eq!(d.outcome, Outcome::Skipped, "{name}");
        }
    }
}

#[test]
fn namespace_labels_from_the_context_are_used() {
    let set = policies(vec![(
        "prod",
        CustodyPolicySpec {
            match_rules: MatchRules {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some([("env".to_string(), "prod".to_string())].into()),
                    match_expressions: None,
                }),
                ..Default::default()
            },
            ..Default::default()
        },
    )]);
    let body = review_of(
        "CREATE",
        &deployment("web", json!({}), "web:1"),
        None,
        "jane",
        &[],
    );
    let request = review::decode(&body).unwrap();
    let vocabulary = custody_crds::Vocabulary::default();
    let quarantine = QuarantineIndex::default();
    for (env, judged) in [("prod", true), ("dev", false)] {
        let labels = [("env".to_string(), env.to_string())].into();
        let ctx = Context {
            vocabulary: &vocabulary,
            namespace_labels: Some(&labels),
            quarantine: &quarantine,
            now: k8s_openapi::jiff::Timestamp::now(),
            attestations: &custody_engine::attest::AttestationCache::default(),
            teams: &custody_engine::TeamIndex::default(),
            background: false,
            activity: &custody_engine::AgentActivity::default(),
            changes: &custody_engine::ChangeIndex::default(),
        };
        assert_eq!(!evaluate(&set, &request, &ctx).allowed, judged, "{env}");
    }
}

#[test]
fn actor_cross_check() {
    let spec = CustodyPolicySpec {
        identities: Identities {
            agents: IdentitySet {
                service_accounts: vec!["agents/*".into()],
                groups: vec!["ai-agents".into()],
                ..Default::default()
            },
            delivery: IdentitySet {
                service_accounts: vec!["argocd/argocd-application-controller".into()],
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let set = policies(vec![("p", spec)]);
    let human = {
        let mut a = with("custody.dev/actor", "human");
        a.as_object_mut().unwrap().remove("custody.dev/agent");
        a
    };
    let cases: Vec<(&str, &str, &[&str], Value, Vec<ViolationCode>)> = vec![
        (
            "agent identity declaring agent",
            "system:serviceaccount:agents:claude",
            &[],
            agent_annotations(),
            vec![],
        ),
        (
            "agent identity declaring human",
            "system:serviceaccount:agents:claude",
            &[],
            human.clone(),
            vec![ViolationCode::ActorMismatch],
        ),
        (
            "agent group declaring human",
            "bot@acme.dev",
            &["ai-agents"],
            human.clone(),
            vec![ViolationCode::ActorMismatch],
        ),
        (
            "agent identity with no actor",
            "system:serviceaccount:agents:claude",
            &[],
            without("custody.dev/actor"),
            vec![
                ViolationCode::MissingAnnotation,
                ViolationCode::ActorMismatch,
            ],
        ),
        (
            "delivery identity passes human provenance through",
            "system:serviceaccount:argocd:argocd-application-controller",
            &[],
            human.clone(),
            vec![],
        ),
        (
            "delivery identity passes agent provenance through",
            "system:serviceaccount:argocd:argocd-application-controller",
            &[],
            agent_annotations(),
            vec![],
        ),
        (
            "a person declaring human",
            "jane@acme.dev",
            &[],
            human,
            vec![],
        ),
    ];
    for (name, user, groups, annotations, expected) in cases {
        let body = review_of(
            "CREATE",
            &deployment("web", annotations, "web:1"),
            None,
            user,
            groups,
        );
        let d = judge_with(&body, &set, &QuarantineIndex::default());
        assert_eq!(codes(&d), expected, "{name}: {:?}", d.message);
    }
}

#[test]
fn stale_provenance() {
    let v1 = deployment("web", agent_annotations(), "web:1");
    let mut scaled = v1.clone();
    scaled["spec"]["replicas"] = json!(5);
    let mut relabelled = v1.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("front");
    let image_only = deployment("web", agent_annotations(), "web:2");
    let image_and_commit = deployment("web", with("custody.dev/source-commit", "abcdef1"), "web:2");
    let image_and_run = deployment("web", with("custody.dev/pipeline-run", "run-2"), "web:2");
    let unannotated_old = deployment("web", json!({}), "web:1");
    // `kubectl rollout restart`: the template gains a restart timestamp, nothing else.
    let mut restarted = v1.clone();
    restarted["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2026-12-03T12:00:00Z"});
    let mut restarted_and_changed = image_only.clone();
    restarted_and_changed["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2026-12-03T12:00:00Z"});
    let cases: Vec<(&str, &Value, &Value, Vec<ViolationCode>)> = vec![
        (
            "image changed, provenance unchanged",
            &image_only,
            &v1,
            vec![ViolationCode::StaleProvenance],
        ),
        ("image and commit changed", &image_and_commit, &v1, vec![]),
        (
            "image and pipeline run changed",
            &image_and_run,
            &v1,
            vec![],
        ),
        ("replicas changed only", &scaled, &v1, vec![]),
        ("object labels changed only", &relabelled, &v1, vec![]),
        ("restarted only", &restarted, &v1, vec![]),
        (
            "restarted with a new image, provenance unchanged",
            &restarted_and_changed,
            &v1,
            vec![ViolationCode::StaleProvenance],
        ),
        (
            "old object had no provenance to go stale",
            &image_only,
            &unannotated_old,
            vec![],
        ),
    ];
    for (name, new, old, expected) in cases {
        let body = review_of("UPDATE", new, Some(old), "jane", &[]);
        let d = judge(&body);
        assert_eq!(codes(&d), expected, "{name}: {:?}", d.message);
    }
}

#[test]
fn stale_provenance_for_cronjobs_and_pods() {
    let mut cron = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "shop", "annotations": agent_annotations()},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "job:1"}]}}}}}
    });
    let old = cron.clone();
    cron["spec"]["schedule"] = json!("0 4 * * *");
    assert!(
        judge(&review_of("UPDATE", &cron, Some(&old), "jane", &[])).allowed,
        "schedule is not the template"
    );
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("job:2");
    let d = judge(&review_of("UPDATE", &cron, Some(&old), "jane", &[]));
    assert_eq!(codes(&d), vec![ViolationCode::StaleProvenance]);

    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop", "annotations": agent_annotations()},
        "spec": {"containers": [{"name": "c", "image": "p:1"}]}
    });
    let mut new_pod = pod.clone();
    new_pod["spec"]["containers"][0]["image"] = json!("p:2");
    let d = judge(&review_of("UPDATE", &new_pod, Some(&pod), "jane", &[]));
    assert_eq!(codes(&d), vec![ViolationCode::StaleProvenance]);
}

fn record(name: &str, action: RecordAction, fingerprint: &str) -> RollbackRecord {
    let t = Time(k8s_openapi::jiff::Timestamp::from_second(1_795_000_000).unwrap());
    RollbackRecord {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        spec: RollbackRecordSpec {
            workload: WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
                uid: None,
            },
            action,
            reason: SignalReason::CrashLoop,
            from: RevisionSnapshot {
                revision: "2".into(),
                template_fingerprint: fingerprint.into(),
                ..Default::default()
            },
            to: None,
            signals: vec![],
            policy: "p".into(),
            explanation: String::new(),
            revision_seen_at: None,
            regression_detected_at: t.clone(),
            acted_at: t,
            team: None,
            oncall: None,
            analysis: None,
        },
        status: None,
    }
}

#[test]
fn quarantine() {
    let v1 = deployment("web", agent_annotations(), "web:1");
    let v2 = deployment("web", with("custody.dev/source-commit", "bbbbbbb"), "web:2");
    // The controller fingerprints the ReplicaSet's template, which carries pod-template-hash.
    let mut rs_template = v2["spec"]["template"].clone();
    rs_template["metadata"]["labels"]["pod-template-hash"] = json!("5d8f9c7b6");
    let fp = custody_crds::template_fingerprint(&rs_template).to_string();
    let reverted = QuarantineIndex::from_records([&record("web-r2", RecordAction::Reverted, &fp)]);
    let alerted = QuarantineIndex::from_records([&record("web-r2", RecordAction::Alerted, &fp)]);
    let dry = QuarantineIndex::from_records([&record("web-r2", RecordAction::DryRun, &fp)]);
    let lifted = {
        let mut r = record("web-r2", RecordAction::Reverted, &fp);
        r.status = Some(custody_crds::RollbackRecordStatus {
            lifted: Some(custody_crds::Lift {
                by: "ann@acme.dev".into(),
                reason: "root cause fixed in the config map".into(),
                at: r.spec.acted_at.clone(),
            }),
            ..Default::default()
        });
        QuarantineIndex::from_records([&r])
    };

    let human_override = {
        let mut a = with("custody.dev/source-commit", "bbbbbbb");
        a["custody.dev/actor"] = json!("human");
        a["custody.dev/quarantine-override"] =
            json!("root cause fixed in the config map, verified by ann");
        a
    };
    let agent_override = {
        let mut a = with("custody.dev/source-commit", "bbbbbbb");
        a["custody.dev/quarantine-override"] = json!("trust me");
        a
    };
    let v2_human = deployment("web", human_override, "web:2");
    let v2_agent_override = deployment("web", agent_override, "web:2");
    let v3 = deployment("web", with("custody.dev/source-commit", "ccccccc"), "web:3");
    let mut v2_meta_only = v2.clone();
    v2_meta_only["metadata"]["labels"]["touched"] = json!("yes");
    // `kubectl rollout restart` of the reverted template; and a record of a reverted revision
    // that was itself a restart, whose fingerprint the controller takes without the annotation.
    let restart = json!({"kubectl.kubernetes.io/restartedAt": "2026-12-03T12:00:00Z"});
    let mut v2_restarted = v2.clone();
    v2_restarted["spec"]["template"]["metadata"]["annotations"] = restart.clone();
    let mut restarted_rs_template = rs_template.clone();
    restarted_rs_template["metadata"]["annotations"] = restart;
    let code = custody_crds::fingerprint::code_fingerprint(&restarted_rs_template).to_string();
    let reverted_restart =
        QuarantineIndex::from_records([&record("web-r2", RecordAction::Reverted, &code)]);

    let argo = "system:serviceaccount:argocd:argocd-application-controller";
    let cases: Vec<(&str, &QuarantineIndex, &str, &Value, Option<&Value>, bool)> = vec![
        (
            "GitOps re-sync of the reverted template",
            &reverted,
            "UPDATE",
            &v2,
            Some(&v1),
            false,
        ),
        (
            "re-creating the reverted template",
            &reverted,
            "CREATE",
            &v2,
            None,
            false,
        ),
        (
            "a lifted record no longer quarantines",
            &lifted,
            "UPDATE",
            &v2,
            Some(&v1),
            true,
        ),
        (
            "an alert does not quarantine",
            &alerted,
            "UPDATE",
            &v2,
            Some(&v1),
            true,
        ),
        (
            "a dry run does not quarantine",
            &dry,
            "UPDATE",
            &v2,
            Some(&v1),
            true,
        ),
        (
            "Git moved on to a new template",
            &reverted,
            "UPDATE",
            &v3,
            Some(&v1),
            true,
        ),
        (
            "a human override with a reason",
            &reverted,
            "UPDATE",
            &v2_human,
            Some(&v1),
            true,
        ),
        (
            "an agent cannot override",
            &reverted,
            "UPDATE",
            &v2_agent_override,
            Some(&v1),
            false,
        ),
        (
            "a restart of the reverted template",
            &reverted,
            "UPDATE",
            &v2_restarted,
            Some(&v1),
            false,
        ),
        (
            "Git's copy of a reverted restarted revision",
            &reverted_restart,
            "UPDATE",
            &v2,
            Some(&v1),
            false,
        ),
        (
            "metadata-only change of an admitted template",
            &reverted,
            "UPDATE",
            &v2_meta_only,
            Some(&v2),
            true,
        ),
    ];
    for (name, index, op, new, old, allowed) in cases {
        let d = judge_with(
            &review_of(op, new, old, argo, &[]),
            &PolicySet::builtin_default(),
            index,
        );
        assert_eq!(d.allowed, allowed, "{name}: {:?}", d.message);
        if !allowed {
            assert_eq!(codes(&d), vec![ViolationCode::Quarantined], "{name}");
            assert!(
                d.message
                    .as_deref()
                    .unwrap()
                    .contains("RollbackRecord \"web-r2\""),
                "{name}"
            );
        }
    }
    let d = judge_with(
        &review_of("UPDATE", &v2_human, Some(&v1), argo, &[]),
        &PolicySet::builtin_default(),
        &reverted,
    );
    assert!(
        d.warnings.iter().any(|w| w.contains("human override")),
        "{:?}",
        d.warnings
    );
    assert!(d.audit_annotations["quarantine-override"].contains("root cause fixed"));
}

#[test]
fn requests_that_are_not_judged() {
    let mut owned = deployment("web-5d8f9c7b6", json!({}), "web:1");
    owned["kind"] = json!("ReplicaSet");
    owned["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}]);
    let mut non_controller_owner = deployment("web", json!({}), "web:1");
    non_controller_owner["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u"}]);
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"}, "spec": {}});
    let rollout = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "web", "namespace": "shop"}, "spec": {}});

    let d = judge(&review_of(
        "CREATE",
        &owned,
        None,
        "system:serviceaccount:kube-system:deployment-controller",
        &[],
    ));
    assert_eq!((d.allowed, d.outcome), (true, Outcome::Skipped));
    let d = judge(&review_of(
        "CREATE",
        &non_controller_owner,
        None,
        "jane",
        &[],
    ));
    assert!(
        !d.allowed,
        "an owner that is not the controller does not exempt"
    );
    let d = judge(&review_of("CREATE", &service, None, "jane", &[]));
    assert_eq!((d.allowed, d.outcome), (true, Outcome::Skipped));
    assert!(
        d.warnings[0].contains("Service is not a workload kind"),
        "{:?}",
        d.warnings
    );
    let d = judge(&review_of("CREATE", &rollout, None, "jane", &[]));
    assert!(
        d.warnings[0].contains("Rollout.argoproj.io"),
        "{:?}",
        d.warnings
    );
}

#[test]
fn malformed_objects_are_rejected_with_a_reason() {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "operation": "CREATE", "userInfo": {"username": "jane"}, "object": {"metadata": "not-an-object"}}
    })
    .to_string();
    let error = review::decode(body.as_bytes()).unwrap_err().to_string();
    assert!(
        error.contains("not a valid AdmissionReview") && error.contains("Metadata"),
        "{error}"
    );

    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "operation": "UPDATE", "userInfo": {"username": "jane"},
            "object": {"metadata": {"name": "web", "annotations": agent_annotations()}, "spec": "not-a-spec"},
            "oldObject": deployment("web", agent_annotations(), "web:1")}
    })
    .to_string();
    let d = judge(body.as_bytes());
    assert_eq!(
        (d.allowed, d.code, d.outcome),
        (false, 400, Outcome::Invalid),
        "{d:?}"
    );
    assert!(d.message.unwrap().contains("cannot read the pod template"));

    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "operation": "CREATE", "userInfo": {"username": "jane"}}
    })
    .to_string();
    let d = judge(body.as_bytes());
    assert_eq!(
        (d.allowed, d.code, d.outcome),
        (false, 400, Outcome::Invalid)
    );
    assert!(d.message.unwrap().contains("has no object"));

    for (body, expected) in [
        ("{", "not a valid AdmissionReview"),
        (
            r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#,
            "admissionReviewVersions: [v1]",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "has no request",
        ),
        (
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}"#,
            "not a valid AdmissionReview",
        ),
    ] {
        let error = review::decode(body.as_bytes()).unwrap_err().to_string();
        assert!(error.contains(expected), "{body}: {error}");
    }
}

#[test]
fn failure_policy_for_a_request() {
    let set = policies(vec![
        (
            "ignore-jobs",
            CustodyPolicySpec {
                failure_policy: FailurePolicy::Ignore,
                match_rules: MatchRules {
                    kinds: vec![WorkloadKind::Job],
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
        (
            "fail-deployments",
            CustodyPolicySpec {
                match_rules: MatchRules {
                    kinds: vec![WorkloadKind::Deployment],
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
    ]);
    let vocabulary = custody_crds::Vocabulary::default();
    let quarantine = QuarantineIndex::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &quarantine,
        now: k8s_openapi::jiff::Timestamp::now(),
        attestations: &custody_engine::attest::AttestationCache::default(),
        teams: &custody_engine::TeamIndex::default(),
        background: false,
        activity: &custody_engine::AgentActivity::default(),
        changes: &custody_engine::ChangeIndex::default(),
    };
    let deploy = review_of(
        "CREATE",
        &deployment("web", json!({}), "web:1"),
        None,
        "jane",
        &[],
    );
    assert_eq!(
        set.failure_policy_for(&review::decode(&deploy).unwrap(), &ctx),
        FailurePolicy::Fail
    );
    let mut job = deployment("j", json!({}), "j:1");
    job["apiVersion"] = json!("batch/v1");
    job["kind"] = json!("Job");
    let job = review_of("CREATE", &job, None, "jane", &[]);
    assert_eq!(
        set.failure_policy_for(&review::decode(&job).unwrap(), &ctx),
        FailurePolicy::Ignore
    );

    let fail =
        custody_engine::Decision::unavailable(FailurePolicy::Fail, "policy cache not synced");
    assert!(!fail.allowed && fail.message.unwrap().contains("policy cache not synced"));
    let ignore =
        custody_engine::Decision::unavailable(FailurePolicy::Ignore, "policy cache not synced");
    assert!(ignore.allowed && ignore.warnings[0].contains("not evaluated"));
}

fn policy_review(op: &str, new: &Value, old: Option<&Value>) -> custody_engine::Decision {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": "CustodyPolicy"},
            "operation": op, "name": new["metadata"]["name"], "userInfo": {"username": "jane"},
            "object": new, "oldObject": old.cloned().unwrap_or(Value::Null)}
    })
    .to_string();
    validate_policy(&review::decode(body.as_bytes()).unwrap())
}

fn policy_doc(mode: &str, failure: &str, ack: Option<&str>) -> Value {
    let mut doc = json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "default"},
        "spec": {"mode": mode, "failurePolicy": failure}
    });
    if let Some(ack) = ack {
        doc["metadata"]["annotations"] = json!({"custody.dev/acknowledge-weakening": ack});
    }
    doc
}

#[test]
fn policy_admission() {
    let enforce = policy_doc("Enforce", "Fail", None);
    let cases: Vec<(&str, &str, Value, Option<Value>, Option<ViolationCode>)> = vec![
        ("a valid new policy", "CREATE", enforce.clone(), None, None),
        (
            "an unknown annotation key",
            "CREATE",
            json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy", "metadata": {"name": "x"}, "spec": {"annotations": [{"key": "team"}]}}),
            None,
            Some(ViolationCode::InvalidPolicy),
        ),
        (
            "a bad regex",
            "CREATE",
            json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy", "metadata": {"name": "x"}, "spec": {"annotations": [{"key": "owner", "pattern": "("}]}}),
            None,
            Some(ViolationCode::InvalidPolicy),
        ),
        (
            "an unknown mode",
            "CREATE",
            policy_doc("Block", "Fail", None),
            None,
            Some(ViolationCode::InvalidPolicy),
        ),
        (
            "weakening the mode silently",
            "UPDATE",
            policy_doc("Warn", "Fail", None),
            Some(enforce.clone()),
            Some(ViolationCode::UnacknowledgedWeakening),
        ),
        (
            "weakening the failure policy silently",
            "UPDATE",
            policy_doc("Enforce", "Ignore", None),
            Some(enforce.clone()),
            Some(ViolationCode::UnacknowledgedWeakening),
        ),
        (
            "weakening with an acknowledgement",
            "UPDATE",
            policy_doc("Audit", "Fail", Some("migration week, approved by sec")),
            Some(enforce.clone()),
            None,
        ),
        (
            "weakening again with the old acknowledgement",
            "UPDATE",
            policy_doc("Audit", "Fail", Some("old reason")),
            Some(policy_doc("Warn", "Fail", Some("old reason"))),
            Some(ViolationCode::UnacknowledgedWeakening),
        ),
        (
            "strengthening needs nothing",
            "UPDATE",
            enforce.clone(),
            Some(policy_doc("Audit", "Ignore", None)),
            None,
        ),
        (
            "an unchanged mode needs nothing",
            "UPDATE",
            enforce.clone(),
            Some(enforce.clone()),
            None,
        ),
    ];
    for (name, op, new, old, expected) in cases {
        let d = policy_review(op, &new, old.as_ref());
        assert_eq!(d.allowed, expected.is_none(), "{name}: {:?}", d.message);
        assert_eq!(d.violations.first().map(|v| v.code), expected, "{name}");
    }
    let d = policy_review("UPDATE", &policy_doc("Warn", "Fail", None), Some(&enforce));
    assert!(d.message.unwrap().contains("mode Enforce -> Warn"));
}

#[test]
fn controller_owned_objects_are_judged_unless_a_controller_writes_them() {
    let argo = Identities {
        controllers: IdentitySet {
            service_accounts: vec!["argo-rollouts/argo-rollouts".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let names_argo = policies(vec![(
        "default",
        CustodyPolicySpec {
            identities: argo.clone(),
            ..Default::default()
        },
    )]);
    let also_strict = policies(vec![
        (
            "default",
            CustodyPolicySpec {
                identities: argo,
                ..Default::default()
            },
        ),
        (
            "replicasets-strict",
            CustodyPolicySpec {
                match_rules: MatchRules {
                    kinds: vec![WorkloadKind::ReplicaSet],
                    ..Default::default()
                },
                ..Default::default()
            },
        ),
    ]);
    let owned_by = |kind: &str, owner_api: &str, owner_kind: &str| {
        let mut o = deployment("web-5d8f9c7b6", json!({}), "web:1");
        o["kind"] = json!(kind);
        if kind == "Pod" {
            o["apiVersion"] = json!("v1");
            o["spec"] = o["spec"]["template"]["spec"].clone();
        }
        o["metadata"]["ownerReferences"] = json!([{"apiVersion": owner_api, "kind": owner_kind,
            "name": "web", "uid": "u", "controller": true}]);
        o
    };
    let pod = owned_by("Pod", "apps/v1", "ReplicaSet");
    let rollout_rs = owned_by("ReplicaSet", "argoproj.io/v1alpha1", "Rollout");
    let mut released = pod.clone();
    released["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    let vocabulary = custody_crds::Vocabulary::default();
    let quarantine = QuarantineIndex::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &quarantine,
        now: k8s_openapi::jiff::Timestamp::now(),
        attestations: &custody_engine::attest::AttestationCache::default(),
        teams: &custody_engine::TeamIndex::default(),
        background: false,
        activity: &custody_engine::AgentActivity::default(),
        changes: &custody_engine::ChangeIndex::default(),
    };
    let argo_sa = "system:serviceaccount:argo-rollouts:argo-rollouts";
    // (situation, policies, operation, object, old object, user, outcome, failure policy)
    let cases: Vec<(
        &str,
        &PolicySet,
        &str,
        &Value,
        Option<&Value>,
        &str,
        Outcome,
        FailurePolicy,
    )> = vec![
        (
            "replicaset controller creates a pod",
            &names_argo,
            "CREATE",
            &pod,
            None,
            "system:serviceaccount:kube-system:replicaset-controller",
            Outcome::Skipped,
            FailurePolicy::Ignore,
        ),
        (
            "kube-controller-manager without SA credentials",
            &names_argo,
            "CREATE",
            &pod,
            None,
            "system:kube-controller-manager",
            Outcome::Skipped,
            FailurePolicy::Ignore,
        ),
        (
            "garbage collector orphans a pod",
            &names_argo,
            "UPDATE",
            &released,
            Some(&pod),
            "system:serviceaccount:kube-system:generic-garbage-collector",
            Outcome::Skipped,
            FailurePolicy::Ignore,
        ),
        (
            "user forges an ownerReference",
            &names_argo,
            "CREATE",
            &pod,
            None,
            "jane",
            Outcome::Denied,
            FailurePolicy::Fail,
        ),
        (
            "Argo Rollouts named by policy",
            &names_argo,
            "CREATE",
            &rollout_rs,
            None,
            argo_sa,
            Outcome::Skipped,
            FailurePolicy::Ignore,
        ),
        (
            "Argo Rollouts named by one policy, judged by another",
            &also_strict,
            "CREATE",
            &rollout_rs,
            None,
            argo_sa,
            Outcome::Denied,
            FailurePolicy::Fail,
        ),
        (
            "Argo Rollouts creates a bare pod",
            &names_argo,
            "CREATE",
            &released,
            None,
            argo_sa,
            Outcome::Denied,
            FailurePolicy::Fail,
        ),
    ];
    for (situation, set, op, object, old, user, outcome, failure) in cases {
        let body = review_of(op, object, old, user, &[]);
        let request = review::decode(&body).unwrap();
        let d = evaluate(set, &request, &ctx);
        assert_eq!(d.outcome, outcome, "{situation}: {:?}", d.message);
        if outcome == Outcome::Denied {
            assert_eq!(
                codes(&d)[0],
                ViolationCode::MissingAnnotation,
                "{situation}"
            );
        }
        assert_eq!(
            set.failure_policy_for(&request, &ctx),
            failure,
            "{situation}: the failure policy follows the same rule"
        );
    }
    let d = evaluate(
        &also_strict,
        &review::decode(&review_of("CREATE", &rollout_rs, None, argo_sa, &[])).unwrap(),
        &ctx,
    );
    assert_eq!(d.audit_annotations["policies"], "replicasets-strict");
}
