//! Change requests (`CustodyChange`), decided: under which policy's approval a request stands
//! and where ([`standing`]), what the controller writes on it and announces ([`review`]),
//! whether its workload runs the approved change, so the approval is spent ([`consume`]), and
//! what people are told ([`notice`]). Pure: the requests, policies, workload and clock are
//! passed in; [`crate::act::changes`] reads and writes.

pub mod consume;
pub mod notice;
pub mod review;
pub mod standing;

#[cfg(test)]
pub(crate) mod tests {
    //! The requests, policies and workloads the tables start from: an agent's change of
    //! Deployment `shop/web` from `web:1` to `web:2`, proposed at [`t`]`(0)`.
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use custody_crds::{
        ChangeWorkload, CustodyChange, CustodyChangeSpec, CustodyChangeStatus, CustodyPolicy,
        DiffLine, Lift, Vocabulary, WorkloadKind,
    };
    use custody_engine::PolicySet;
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{Value, json};

    pub const PROPOSER: &str = "system:serviceaccount:agents:claude";

    pub fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    /// Policies selecting namespace `shop`, each with the approval written as YAML.
    pub fn policies(approvals: &[(&str, &str)]) -> PolicySet {
        let policies = approvals.iter().map(|(name, approval)| {
            let indented: String = approval.lines().map(|l| format!("    {l}\n")).collect();
            let yaml = format!(
                "match:\n  namespaces:\n    include: [shop]\nagents:\n  approval:\n{indented}"
            );
            CustodyPolicy::new(name, serde_saphyr::from_str(&yaml).unwrap())
        });
        let (set, errors) = PolicySet::compile(policies);
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    /// The agent's Deployment `shop/web` running `image` at `generation`, as its controller
    /// last observed it, at the Deployment revision given.
    pub fn deployment(
        image: &str,
        generation: i64,
        observed: Option<i64>,
        revision: Option<&str>,
    ) -> Value {
        let mut annotations = json!({
            "custody.dev/actor": "agent", "custody.dev/agent": "claude-code",
            "custody.dev/owner": "team-web", "custody.dev/source-commit": "abcdef1"
        });
        if let Some(r) = revision {
            annotations["deployment.kubernetes.io/revision"] = json!(r);
        }
        let mut object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": generation, "annotations": annotations},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}},
            "status": {}
        });
        if let Some(o) = observed {
            object["status"]["observedGeneration"] = json!(o);
        }
        object
    }

    /// The request for [`deployment`]`("web:2", ..)`, proposed at `t(0)`.
    pub fn change(workload: &str) -> CustodyChange {
        let digest = super::consume::digests(
            WorkloadKind::Deployment,
            "shop",
            &deployment("web:2", 1, None, None),
            &Vocabulary::default(),
        )
        .remove(0);
        let provenance: BTreeMap<String, String> = [
            ("actor", "agent"),
            ("agent", "claude-code"),
            ("owner", "team-web"),
            ("source-commit", "abcdef1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut c = CustodyChange::new(
            &format!("{workload}-0123456789"),
            CustodyChangeSpec {
                workload: ChangeWorkload {
                    kind: WorkloadKind::Deployment,
                    name: workload.into(),
                },
                digest,
                template_digest: "sha256:template".into(),
                provenance,
                labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                agent: "claude-code".into(),
                proposer: PROPOSER.into(),
                reason: "bump the image to fix CVE-2026-1234".into(),
                diff: vec![DiffLine {
                    field: "containers[web].image".into(),
                    before: Some("web:1".into()),
                    after: Some("web:2".into()),
                }],
                diff_truncated: false,
                running_template_digest: None,
            },
        );
        c.metadata.namespace = Some("shop".into());
        c.metadata.creation_timestamp = Some(Time(t(0)));
        c
    }

    fn lift(by: &str, at: i64) -> Lift {
        Lift {
            by: by.into(),
            reason: "checked the image bump and its limits".into(),
            at: Time(t(at)),
        }
    }

    /// `c` approved by each of `by`, a minute apart from `t(60)`.
    pub fn approved(mut c: CustodyChange, by: &[&str]) -> CustodyChange {
        let status = c.status.get_or_insert_with(CustodyChangeStatus::default);
        for (i, who) in by.iter().enumerate() {
            status.approvals.push(lift(who, 60 * (i as i64 + 1)));
        }
        c
    }

    /// `c` rejected by `by` at `t(90)`.
    pub fn rejected(mut c: CustodyChange, by: &str) -> CustodyChange {
        c.status
            .get_or_insert_with(CustodyChangeStatus::default)
            .rejection = Some(lift(by, 90));
        c
    }
}
