//! Reads a revision's attestation from the API server, for the rare moments that need the
//! envelope itself (a regression decided under `spec.signatures`, a revision marked by the
//! controller): the cache keeps only its digest (see [`super::vouch`]). A revision the cache
//! saw unsigned is never read for one, so an unsigned revision costs no request and no failure.
//! One [`Envelopes`] serves one decision, so each revision's attestation is read at most once
//! however many steps need it (the vouch, the revert, the mark).

use custody_crds::{Vocabulary, WorkloadKind};
use kube::{Api, Client};

use crate::cache::observe::{Revision, WorkloadState};
use crate::cache::slim::{SlimControllerRevision, SlimDaemonSet, SlimReplicaSet, SlimStatefulSet};
use crate::metrics::{KindLabels, Label, Metrics};

use super::vouch::{Attestation, cached_digest};

/// Where a revision's attestation is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A Deployment's ReplicaSet, which copies the Deployment's annotations.
    ReplicaSet,
    /// The StatefulSet or DaemonSet itself, for the revision it runs: its ControllerRevisions
    /// do not copy its annotations (see [`crate::cache::observe::Observed::assemble`]).
    Workload,
    /// A ControllerRevision the controller marked, which it gave the attestation then.
    ControllerRevision,
}

/// Where `revision`'s attestation is read from.
pub fn holder(workload: &WorkloadState, revision: &Revision) -> Holder {
    match workload.kind {
        WorkloadKind::Deployment => Holder::ReplicaSet,
        _ if revision.fingerprint == workload.template_fingerprint => Holder::Workload,
        _ => Holder::ControllerRevision,
    }
}

/// The attestations one decision has read, by revision name, and what reading needs.
pub struct Envelopes<'c> {
    client: &'c Client,
    vocabulary: &'c Vocabulary,
    metrics: &'c Metrics,
    read: Vec<(String, Attestation)>,
}

impl<'c> Envelopes<'c> {
    /// Nothing read yet.
    pub fn new(client: &'c Client, vocabulary: &'c Vocabulary, metrics: &'c Metrics) -> Self {
        Self {
            client,
            vocabulary,
            metrics,
            read: Vec::new(),
        }
    }

    /// `revision`'s attestation as stored when first asked for in this decision. A failure is
    /// logged and counted and comes back as [`Attestation::Unreadable`], which
    /// [`super::vouch::vouch`] never believes; it is not asked again within the decision
    /// (the steps after a verification act on what it saw) unless [`Self::retry_unreadable`]
    /// says so; the next decision asks again.
    pub async fn attestation_of(
        &mut self,
        workload: &WorkloadState,
        revision: &Revision,
    ) -> Attestation {
        if let Some((_, known)) = self.read.iter().find(|(name, _)| *name == revision.name) {
            return known.clone();
        }
        let attestation = self.fetch(workload, revision).await;
        self.read.push((revision.name.clone(), attestation.clone()));
        attestation
    }

    /// Forgets the reads that failed, so the next step that needs one reads it again: a step
    /// whose failure is its own (an announcement that will be retried) must not make a later,
    /// separate step act on it.
    pub fn retry_unreadable(&mut self) {
        self.read
            .retain(|(_, a)| !matches!(a, Attestation::Unreadable(_)));
    }

    async fn fetch(&self, workload: &WorkloadState, revision: &Revision) -> Attestation {
        let Some(cached) = cached_digest(revision, self.vocabulary) else {
            return Attestation::Absent;
        };
        let attestation = match self.read(workload, revision).await {
            Ok(Some(envelope)) => Attestation::Read(envelope),
            Ok(None) => Attestation::Absent,
            Err(error) => {
                self.metrics
                    .attestation_read_failures
                    .get_or_create(&KindLabels {
                        kind: Label(workload.kind),
                    })
                    .inc();
                tracing::warn!(
                    kind = workload.kind.as_str(), namespace = %workload.namespace,
                    name = %workload.name, revision = %revision.name, %error,
                    "cannot read the revision's attestation; its actor is not believed"
                );
                Attestation::Unreadable(error.to_string())
            }
        };
        if attestation.differs_from(Some(cached)) {
            // The watch will catch up; what was read is the truth meanwhile.
            tracing::debug!(
                kind = workload.kind.as_str(), namespace = %workload.namespace,
                name = %workload.name, revision = %revision.name,
                "the revision's attestation changed since it was cached; using the one read"
            );
        }
        attestation
    }

    /// The attestation annotation of the object holding `revision`'s.
    async fn read(
        &self,
        workload: &WorkloadState,
        revision: &Revision,
    ) -> Result<Option<String>, kube::Error> {
        let key = self.vocabulary.attestation();
        let (client, ns) = (self.client.clone(), workload.namespace.as_str());
        let mut annotations = match (holder(workload, revision), workload.kind) {
            (Holder::ReplicaSet, _) => {
                Api::<SlimReplicaSet>::namespaced(client, ns)
                    .get(&revision.name)
                    .await?
                    .metadata
                    .annotations
            }
            (Holder::Workload, WorkloadKind::StatefulSet) => {
                Api::<SlimStatefulSet>::namespaced(client, ns)
                    .get(&workload.name)
                    .await?
                    .metadata
                    .annotations
            }
            (Holder::Workload, _) => {
                Api::<SlimDaemonSet>::namespaced(client, ns)
                    .get(&workload.name)
                    .await?
                    .metadata
                    .annotations
            }
            (Holder::ControllerRevision, _) => {
                Api::<SlimControllerRevision>::namespaced(client, ns)
                    .get(&revision.name)
                    .await?
                    .metadata
                    .annotations
            }
        };
        Ok(annotations.as_mut().and_then(|a| a.remove(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::observe::Revision;
    use serde_json::json;

    fn workload(kind: WorkloadKind, fingerprint: &str) -> WorkloadState {
        WorkloadState {
            kind,
            name: "db".into(),
            uid: "uid-db".into(),
            max_unavailable: 1,
            ..WorkloadState::sample(fingerprint)
        }
    }

    #[test]
    fn the_attestation_is_read_where_it_is_stored() {
        let current = Revision::new("db-2".into(), 2, &json!({"v": 2}), Default::default(), None);
        let older = Revision::new("db-1".into(), 1, &json!({"v": 1}), Default::default(), None);
        let running = current.fingerprint.clone();
        let deployment = workload(WorkloadKind::Deployment, &running);
        assert_eq!(holder(&deployment, &current), Holder::ReplicaSet);
        assert_eq!(holder(&deployment, &older), Holder::ReplicaSet);
        for kind in [WorkloadKind::StatefulSet, WorkloadKind::DaemonSet] {
            let w = workload(kind, &running);
            assert_eq!(holder(&w, &current), Holder::Workload, "{kind:?}");
            assert_eq!(holder(&w, &older), Holder::ControllerRevision, "{kind:?}");
        }
    }
}
