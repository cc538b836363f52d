//! Signed provenance in the controller: the actor it acts on is the one a key vouched for, the
//! record names the key, and a revert restores the attestation with the template, so the
//! restored revision verifies at admission as it did when it was first applied. The cache keeps
//! only a digest of each attestation; the envelopes are passed in as the controller reads them
//! from the API server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use custody_controller::act::{record, revert};
use custody_controller::cache::observe::{Observed, Revision};
use custody_controller::decide::Action;
use custody_controller::decide::assess::{Assessment, assess};
use custody_controller::decide::choose::{Declared, choose};
use custody_controller::signed::vouch::{Attestation, Vouch, believed, digest, keys_of, vouch};
use custody_crds::attestation::{Claim, CompiledKey, SIGNED_KEYS, subject_digest, verify};
use custody_crds::{
    Actor, AnnotationKey, CustodyPolicy, CustodyPolicySpec, RecordAction, RollbackSettings,
    SignatureMode, SignaturePolicy, TrustedKey, Vocabulary, WorkloadKind,
};
use serde_json::{Value, json};
use support::signing::{Key, stored};
use support::*;

fn provenance(actor: &str) -> BTreeMap<String, String> {
    [
        ("custody.dev/actor", actor),
        ("custody.dev/agent", "claude-code/1.0"),
        ("custody.dev/source-repo", "https://github.com/acme/shop"),
        ("custody.dev/source-commit", "abcdef1"),
        ("custody.dev/owner", "team-shop"),
        ("custody.dev/oncall", "@shop-oncall"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What the API server stores: the envelopes, by revision name.
type Stored = BTreeMap<String, String>;

/// Annotations as the cache keeps them: the attestation as its digest.
fn cached(mut annotations: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if let Some(envelope) = annotations.get_mut("custody.dev/attestation") {
        *envelope = digest(envelope);
    }
    annotations
}

fn read(stored: &Stored, revision: &str) -> Attestation {
    stored
        .get(revision)
        .map_or(Attestation::Absent, |e| Attestation::Read(e.clone()))
}

/// Revision 1 signed by the release key for a human and marked healthy; revision 2 by `actor`,
/// signed by `v2_key` if given, crash-looping.
fn situation(release: &Key, v2: (&str, Option<&Key>)) -> (Observed, Stored) {
    let mut a1 = provenance("human");
    a1.insert(
        "custody.dev/attestation".into(),
        release.sign(&stored("web:1", "h1"), &a1),
    );
    let (healthy_key, healthy_value) = healthy_mark();
    a1.insert(healthy_key.into(), healthy_value.into());
    let mut a2 = provenance(v2.0);
    if let Some(key) = v2.1 {
        a2.insert(
            "custody.dev/attestation".into(),
            key.sign(&stored("web:2", "h2"), &a2),
        );
    }
    let envelopes: Stored = [("web-1", &a1), ("web-2", &a2)]
        .into_iter()
        .filter_map(|(name, a)| Some((name.to_string(), a.get("custody.dev/attestation")?.clone())))
        .collect();
    let (a1, a2) = (cached(a1), cached(a2));
    let mut workload = deployment("web:2", 3, 0, 3);
    workload.template_fingerprint =
        custody_crds::template_fingerprint(&stored("web:2", "h2")).to_string();
    workload.annotations = a2.clone();
    let mut crashing = pod("web-2", 1, false, 0);
    crashing.containers[0].waiting = Some("CrashLoopBackOff".into());
    crashing.containers[0].restarts = 5;
    let observed = Observed {
        workload,
        revisions: vec![
            Revision::new("web-2".into(), 2, &stored("web:2", "h2"), a2, Some(t(0))),
            Revision::new("web-1".into(), 1, &stored("web:1", "h1"), a1, Some(t(0))),
        ],
        pods: vec![crashing],
        nodes: Vec::new(),
    };
    (observed, envelopes)
}

/// The release key trusted for people and the CI key for agents, and [`situation`] with the
/// agent's revision 2 signed by the CI key.
fn ci_signed_agent_revision() -> (CustodyPolicy, Observed, Stored) {
    let (release, ci) = (Key::new("release"), Key::new("ci"));
    let policy = policy(vec![
        release.trusted(vec![Actor::Human]),
        ci.trusted(vec![Actor::Agent]),
    ]);
    let (observed, envelopes) = situation(&release, ("agent", Some(&ci)));
    (policy, observed, envelopes)
}

fn policy(keys: Vec<TrustedKey>) -> CustodyPolicy {
    CustodyPolicy::new(
        "signed",
        CustodyPolicySpec {
            signatures: Some(SignaturePolicy {
                mode: SignatureMode::Required,
                keys,
            }),
            ..CustodyPolicySpec::default()
        },
    )
}

fn judge(
    observed: &Observed,
    policy: &CustodyPolicy,
    attestation: &Attestation,
) -> (Vouch, Action) {
    let vocabulary = Vocabulary::default();
    let keys = keys_of(policy);
    let current = &observed.revisions[0];
    let v = vouch(
        &observed.workload,
        current,
        attestation,
        Some(policy),
        &keys,
        &vocabulary,
        t(NOW),
    );
    // As the controller does: the health assessed once, then revert or alert chosen on the
    // actor the attestation vouches for.
    let settings = RollbackSettings::default();
    let mut action = match assess(observed, &settings, &vocabulary, None, t(NOW)) {
        Assessment::Settled(action) => action,
        Assessment::Regressed(regression) => {
            let mut declared = Declared::of(regression.current, &vocabulary);
            declared.actor = believed(declared.actor, &v);
            choose(&regression, declared, &settings, false)
        }
    };
    if let Action::Revert(verdict) | Action::Alert(verdict) = &mut action {
        verdict.attested_by = v.key_id().map(str::to_string);
    }
    (v, action)
}

#[test]
fn a_signed_agent_revision_is_reverted_and_the_record_names_its_key() {
    let (policy, observed, envelopes) = ci_signed_agent_revision();
    let (v, action) = judge(&observed, &policy, &read(&envelopes, "web-2"));
    assert_eq!(
        v,
        Vouch::Verified {
            key_id: "ci".into(),
            actor: Some(Actor::Agent)
        }
    );
    let Action::Revert(verdict) = action else {
        panic!("expected a revert, got {action:?}");
    };
    let record = record::build(
        &observed.workload,
        &verdict,
        RecordAction::Reverted,
        "signed",
        &Vocabulary::default(),
        None,
        t(NOW),
    );
    assert_eq!(record.spec.from.attested_by.as_deref(), Some("ci"));
}

#[test]
fn an_unverified_claim_of_a_human_is_not_believed() {
    let release = Key::new("release");
    let policy = policy(vec![release.trusted(vec![Actor::Human])]);
    // An agent's revision that writes actor: human and carries no attestation (admitted before
    // the policy required one, say): the controller does not take the claim at its word.
    let (observed, envelopes) = situation(&release, ("human", None));
    let (v, action) = judge(&observed, &policy, &read(&envelopes, "web-2"));
    assert!(
        matches!(v, Vouch::Unverified { required: true, .. }),
        "{v:?}"
    );
    let Action::Alert(verdict) = action else {
        panic!("an unverified actor is alerted on, not trusted: {action:?}");
    };
    assert!(
        verdict.explanation.contains("an undeclared actor"),
        "{}",
        verdict.explanation
    );
}

#[test]
fn the_reverted_workload_verifies_as_its_restored_revision() {
    let (policy, observed, envelopes) = ci_signed_agent_revision();
    let (_, Action::Revert(verdict)) = judge(&observed, &policy, &read(&envelopes, "web-2")) else {
        panic!("expected a revert");
    };
    let to = verdict.to.clone().unwrap();
    // The Deployment as stored at revision 2, then the controller's revert patch applied.
    let mut stored_annotations = observed.workload.annotations.clone();
    stored_annotations.insert("custody.dev/attestation".into(), envelopes["web-2"].clone());
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "42",
            "annotations": stored_annotations},
        "spec": {"template": stored("web:2", "h2")}
    });
    deployment["spec"]["template"]["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    let patch = revert::patch(
        &observed.workload,
        stored("web:1", "h1"),
        &to,
        envelopes.get(&to.name).map(String::as_str),
        &verdict,
        "web-r2-x",
        &Vocabulary::default(),
    );
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    json_patch::patch(&mut deployment, &patch).unwrap();

    // What the webhook checks when the patched Deployment comes back to it.
    let annotations = deployment["metadata"]["annotations"].as_object().unwrap();
    let vocabulary = Vocabulary::default();
    let claim = Claim {
        kind: WorkloadKind::Deployment,
        namespace: "shop".into(),
        name: "web".into(),
        template_digest: subject_digest(WorkloadKind::Deployment, &deployment["spec"]["template"]),
        template: None,
        unbound_digest: None,
        annotations: SIGNED_KEYS
            .into_iter()
            .filter_map(|k| {
                annotations
                    .get(vocabulary.key(k))
                    .and_then(Value::as_str)
                    .map(|v| (k, v.to_string()))
            })
            .collect(),
    };
    let keys: Vec<CompiledKey> = keys_of(&policy);
    let envelope = annotations["custody.dev/attestation"].as_str().unwrap();
    let verified = verify(envelope, &keys, &claim, t(NOW)).expect("the restored revision verifies");
    assert_eq!(verified.key_id, "release");
    assert_eq!(verified.actor, Some(Actor::Human));
    assert_eq!(
        claim
            .annotations
            .get(&AnnotationKey::Actor)
            .map(String::as_str),
        Some("human")
    );
}

#[test]
fn the_cache_keeps_a_digest_not_the_envelope() {
    let (release, ci) = (Key::new("release"), Key::new("ci"));
    let (observed, envelopes) = situation(&release, ("agent", Some(&ci)));
    let cached = &observed.revisions[0].annotations["custody.dev/attestation"];
    assert_eq!(cached, &digest(&envelopes["web-2"]));
    assert!(
        cached.len() < 80 && envelopes["web-2"].len() > 200,
        "{cached}"
    );
}

#[test]
fn an_attestation_that_cannot_be_read_is_not_believed() {
    let (policy, observed, _) = ci_signed_agent_revision();
    let unreadable = Attestation::Unreadable("connection refused".into());
    let (v, action) = judge(&observed, &policy, &unreadable);
    assert!(
        matches!(&v, Vouch::Unverified { required: true, why } if why.contains("connection refused")),
        "{v:?}"
    );
    let Action::Alert(verdict) = action else {
        panic!("an actor no key could vouch for is alerted on, not reverted: {action:?}");
    };
    assert_eq!(verdict.attested_by, None);
}

#[test]
fn the_envelope_read_is_the_truth_when_it_changed_since_cached() {
    let (policy, observed, envelopes) = ci_signed_agent_revision();
    let cached = observed.revisions[0]
        .annotations
        .get("custody.dev/attestation")
        .map(String::as_str);
    // Stripped since the cache saw it: judged as unsigned, not as the cache remembers it.
    assert!(Attestation::Absent.differs_from(cached));
    let (v, _) = judge(&observed, &policy, &Attestation::Absent);
    assert!(
        matches!(v, Vouch::Unverified { required: true, .. }),
        "{v:?}"
    );
    let same = read(&envelopes, "web-2");
    assert!(!same.differs_from(cached));
    let (v, _) = judge(&observed, &policy, &same);
    assert_eq!(v.key_id(), Some("ci"));
}

#[test]
fn a_revert_to_an_unsigned_revision_removes_the_attestation() {
    let (policy, observed, envelopes) = ci_signed_agent_revision();
    let (_, Action::Revert(verdict)) = judge(&observed, &policy, &read(&envelopes, "web-2")) else {
        panic!("expected a revert");
    };
    let to = verdict.to.clone().unwrap();
    let after = revert::annotations_after(
        &observed.workload,
        &to,
        None,
        &verdict,
        "web-r2-x",
        &Vocabulary::default(),
    );
    assert_eq!(after.get("custody.dev/attestation"), Some(&None));
    // Ownership comes back only with an attestation to vouch for it.
    assert_eq!(after.get("custody.dev/owner"), None);
}

#[test]
fn a_restarted_signed_revision_still_verifies() {
    // `kubectl rollout restart` of the agent's signed v2: a new ReplicaSet whose template has
    // a restart timestamp, carrying the attestation signed over the template without it.
    let (policy, mut observed, envelopes) = ci_signed_agent_revision();
    let mut template = stored("web:2", "h3");
    template["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2026-12-03T12:00:00Z"});
    let annotations = observed.revisions[0].annotations.clone();
    observed.revisions[0] = Revision::new("web-3".into(), 3, &template, annotations, Some(t(0)));
    let v = vouch(
        &observed.workload,
        &observed.revisions[0],
        &read(&envelopes, "web-2"),
        Some(&policy),
        &keys_of(&policy),
        &Vocabulary::default(),
        t(NOW),
    );
    assert_eq!(
        v,
        Vouch::Verified {
            key_id: "ci".into(),
            actor: Some(Actor::Agent)
        }
    );
}
