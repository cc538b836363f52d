//! Which writes are a controller's, and so are not judged.
//!
//! A Deployment's ReplicaSets, a ReplicaSet's Pods and a CronJob's Jobs are written by their
//! controllers from a template whose owner was judged when it was applied; judging them again
//! would only wedge rollouts (and, with the webhook down under `failurePolicy: Fail`, stop Pod
//! creation cluster-wide). But an ownerReference is just a field anyone may write, so it proves
//! nothing by itself: a write counts as a controller's only when the object is controller-owned
//! *and* the requester is a controller identity. Anyone else writing the same object is judged
//! like any other requester.
//!
//! The chart's `matchConditions` (charts/custody/templates/webhook-configurations.yaml) encode
//! the same rule so the apiserver does not even call the webhook for these writes; they are an
//! optimisation and outage-safety only, so the rule must hold here on its own.

use custody_crds::IdentitySet;

use crate::identity::identity_matches;
use crate::object::WorkloadObject;
use crate::request::Request;

/// kube-controller-manager's identities that write the kinds Custody judges with a
/// `controller: true` ownerReference: their own service accounts (the default,
/// `--use-service-account-credentials`), and the manager's own user when it runs without them.
///
/// - `deployment-controller`: a Deployment's ReplicaSets (create, adopt, release, annotate).
/// - `replicaset-controller`, `replication-controller`, `statefulset-controller`,
///   `daemon-set-controller`, `job-controller`: their Pods (create, adopt, release; the Job
///   controller also updates Pods to remove its tracking finalizer).
/// - `cronjob-controller`: a CronJob's Jobs.
/// - `generic-garbage-collector`: removes ownerReferences when orphaning, and finalizers during
///   foreground deletion, on objects controllers own.
///
/// Keep in sync with `custody.builtinControllerUsers` in charts/custody/templates/_helpers.tpl.
pub const BUILTIN_CONTROLLERS: [&str; 9] = [
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:replication-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:kube-controller-manager",
];

/// How a request stands towards controller ownership, before any policy is consulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerWrite {
    /// No controller ownerReference on the object, nor on its stored version: judged.
    Unowned,
    /// Controller-owned, written by one of kube-controller-manager's identities: not judged.
    BuiltinController,
    /// Controller-owned, written by someone else: judged, except by the policies that name the
    /// requester in `identities.controllers`.
    OwnedByOther,
}

impl ControllerWrite {
    /// Classifies a request. The stored version counts too, so a controller releasing an
    /// object (the garbage collector orphaning it, a ReplicaSet letting go of a relabelled Pod)
    /// is still that controller's write although the new object has no owner any more.
    pub fn of(request: &Request<'_>) -> Self {
        let owned = |o: Option<&WorkloadObject<'_>>| o.is_some_and(|o| o.controller().is_some());
        if !owned(request.object.as_ref()) && !owned(request.old_object.as_ref()) {
            ControllerWrite::Unowned
        } else if BUILTIN_CONTROLLERS.contains(&request.user_info.username.as_ref()) {
            ControllerWrite::BuiltinController
        } else {
            ControllerWrite::OwnedByOther
        }
    }

    /// Whether a policy whose `identities.controllers` is `named` leaves this request unjudged
    /// as a controller's write.
    pub fn is_controller_write(
        self,
        named: &IdentitySet,
        username: &str,
        groups: &[impl AsRef<str>],
    ) -> bool {
        match self {
            ControllerWrite::Unowned => false,
            ControllerWrite::BuiltinController => true,
            ControllerWrite::OwnedByOther => identity_matches(named, username, groups),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const RS_OWNER: &str = r#"[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d8f","uid":"u","controller":true}]"#;

    fn review_body(
        operation: &str,
        owners: Option<&str>,
        old_owners: Option<&str>,
        user: &str,
        groups: &[&str],
    ) -> String {
        let object = |owners: Option<&str>| {
            let mut o = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-5d8f-x", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "image": "web:1"}]}});
            if let Some(owners) = owners {
                o["metadata"]["ownerReferences"] = serde_json::from_str(owners).unwrap();
            }
            o
        };
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": operation, "namespace": "shop",
                "userInfo": {"username": user, "groups": groups},
                "object": object(owners),
                "oldObject": if operation == "UPDATE" { object(old_owners) } else { Value::Null }}})
        .to_string()
    }

    #[test]
    fn only_controllers_writing_what_they_own_skip_judgement() {
        let argo = IdentitySet {
            service_accounts: vec!["argo-rollouts/argo-rollouts".into()],
            ..Default::default()
        };
        let platform_group = IdentitySet {
            groups: vec!["platform:controllers".into()],
            ..Default::default()
        };
        let none = IdentitySet::default();
        let non_controller_owner =
            r#"[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"u"}]"#;
        let controller_false = r#"[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web","uid":"u","controller":false}]"#;
        // (situation, operation, ownerReferences, old ownerReferences, user, groups, policy's
        //  identities.controllers, expected ownership, skipped by that policy)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            &str,
            Option<&str>,
            Option<&str>,
            &str,
            &[&str],
            &IdentitySet,
            ControllerWrite,
            bool,
        )> = vec![
            (
                "replicaset controller creates a pod",
                "CREATE",
                Some(RS_OWNER),
                None,
                "system:serviceaccount:kube-system:replicaset-controller",
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                ],
                &none,
                ControllerWrite::BuiltinController,
                true,
            ),
            (
                "job controller removes its finalizer from a pod",
                "UPDATE",
                Some(RS_OWNER),
                Some(RS_OWNER),
                "system:serviceaccount:kube-system:job-controller",
                &[],
                &none,
                ControllerWrite::BuiltinController,
                true,
            ),
            (
                "kube-controller-manager without SA credentials",
                "CREATE",
                Some(RS_OWNER),
                None,
                "system:kube-controller-manager",
                &[],
                &none,
                ControllerWrite::BuiltinController,
                true,
            ),
            (
                "garbage collector orphans a pod",
                "UPDATE",
                None,
                Some(RS_OWNER),
                "system:serviceaccount:kube-system:generic-garbage-collector",
                &[],
                &none,
                ControllerWrite::BuiltinController,
                true,
            ),
            (
                "user forges an ownerReference",
                "CREATE",
                Some(RS_OWNER),
                None,
                "jane",
                &["system:authenticated"],
                &none,
                ControllerWrite::OwnedByOther,
                false,
            ),
            (
                "agent forges an ownerReference while a policy names Argo Rollouts",
                "CREATE",
                Some(RS_OWNER),
                None,
                "system:serviceaccount:agents:claude",
                &["system:serviceaccounts"],
                &argo,
                ControllerWrite::OwnedByOther,
                false,
            ),
            (
                "user strips the ownerReference of a controller's pod",
                "UPDATE",
                None,
                Some(RS_OWNER),
                "jane",
                &[],
                &none,
                ControllerWrite::OwnedByOther,
                false,
            ),
            (
                "Argo Rollouts named by policy",
                "CREATE",
                Some(RS_OWNER),
                None,
                "system:serviceaccount:argo-rollouts:argo-rollouts",
                &["system:serviceaccounts"],
                &argo,
                ControllerWrite::OwnedByOther,
                true,
            ),
            (
                "Argo Rollouts not named by the policy",
                "CREATE",
                Some(RS_OWNER),
                None,
                "system:serviceaccount:argo-rollouts:argo-rollouts",
                &[],
                &none,
                ControllerWrite::OwnedByOther,
                false,
            ),
            (
                "controller named by group",
                "UPDATE",
                Some(RS_OWNER),
                Some(RS_OWNER),
                "platform-operator",
                &["platform:controllers"],
                &platform_group,
                ControllerWrite::OwnedByOther,
                true,
            ),
            (
                "a kube-system service account that is no controller",
                "CREATE",
                Some(RS_OWNER),
                None,
                "system:serviceaccount:kube-system:default",
                &[],
                &none,
                ControllerWrite::OwnedByOther,
                false,
            ),
            (
                "replicaset controller writes a bare pod",
                "CREATE",
                None,
                None,
                "system:serviceaccount:kube-system:replicaset-controller",
                &[],
                &none,
                ControllerWrite::Unowned,
                false,
            ),
            (
                "an owner that is not the controller",
                "CREATE",
                Some(non_controller_owner),
                None,
                "system:serviceaccount:kube-system:replicaset-controller",
                &[],
                &none,
                ControllerWrite::Unowned,
                false,
            ),
            (
                "an owner marked controller: false",
                "CREATE",
                Some(controller_false),
                None,
                "system:serviceaccount:argo-rollouts:argo-rollouts",
                &[],
                &argo,
                ControllerWrite::Unowned,
                false,
            ),
        ];
        for (situation, op, owners, old, user, groups, named, ownership, skipped) in cases {
            let body = review_body(op, owners, old, user, groups);
            let request = crate::request::from_review(&body);
            let found = ControllerWrite::of(&request);
            assert_eq!(found, ownership, "{situation}");
            let groups: Vec<&str> = groups.to_vec();
            assert_eq!(
                found.is_controller_write(named, user, &groups),
                skipped,
                "{situation}"
            );
        }
    }
}
