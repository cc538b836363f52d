//! Review bodies, a policy and change requests for the approval scenarios of the engine bench:
//! the agent's Deployment `web` in `shop` moving from one image to the next, by an agent's
//! service account or by a person.

use custody_crds::{Approval, CustodyChange, CustodyChangeStatus, Lift};
use custody_engine::{ChangeIndex, PolicySet};
use custody_testkit::admission::review_of;
use custody_testkit::approval::{AGENT_SA, agent_deployment, proposal, reviewed};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// One policy over `shop` whose agent identities are the `agents` service accounts, with or
/// without `spec.agents.approval` (every agent, one approval by the owning team).
pub fn policy(with_approval: bool) -> PolicySet {
    reviewed(with_approval.then(Approval::default))
}

/// The agent's Deployment `name` in `namespace` running `image`.
fn workload(name: &str, namespace: &str, image: &str) -> Value {
    agent_deployment(name, namespace, image)
}

/// An agent's update of `web` in `namespace` from image 1 to image 2.
pub fn agent_update(namespace: &str) -> Vec<u8> {
    let old = workload("web", namespace, "shop/web:1");
    let new = workload("web", namespace, "shop/web:2");
    review_of("UPDATE", &new, Some(&old), AGENT_SA, &[])
}

/// A person's update of `web` in `shop` from image 1 to image 2.
pub fn person_update() -> Vec<u8> {
    let as_person = |mut object: Value| {
        let annotations = &mut object["metadata"]["annotations"];
        annotations["custody.dev/actor"] = json!("human");
        if let Some(map) = annotations.as_object_mut() {
            map.remove("custody.dev/agent");
        }
        object
    };
    let old = as_person(workload("web", "shop", "shop/web:1"));
    let new = as_person(workload("web", "shop", "shop/web:2"));
    review_of("UPDATE", &new, Some(&old), "ann@acme.dev", &[])
}

/// The change request `custody propose` makes for `object`, proposed an hour ago, approved by a
/// person a minute ago when `approved`.
fn request(object: &Value, approved: bool) -> CustodyChange {
    let now = Timestamp::now();
    let mut change = proposal(object, AGENT_SA, now - SignedDuration::from_hours(1));
    change.status = approved.then(|| CustodyChangeStatus {
        approvals: vec![Lift {
            by: "ann@acme.dev".into(),
            reason: "checked the image bump".into(),
            at: Time(now - SignedDuration::from_mins(1)),
        }],
        ..CustodyChangeStatus::default()
    });
    change
}

/// (1,000 change requests, one of them the approved change of `web`'s update to image 2; the
/// 999 others alone): three requests each for 333 other workloads in `shop`, two pending and
/// one approved.
pub fn changes() -> (ChangeIndex, ChangeIndex) {
    let others: Vec<CustodyChange> = (0..999)
        .map(|i| {
            let image = format!("shop/app:{}", i % 3 + 2);
            request(
                &workload(&format!("app-{}", i / 3), "shop", &image),
                i % 3 == 2,
            )
        })
        .collect();
    let own = request(&workload("web", "shop", "shop/web:2"), true);
    (
        ChangeIndex::from_changes(others.iter().chain([&own])),
        ChangeIndex::from_changes(&others),
    )
}
