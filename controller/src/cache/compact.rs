//! How the cache stores what [`super::observe`] reduces, so that tens of thousands of objects fit
//! in a few tens of megabytes: each object's strings in one buffer, small maps packed the same
//! way instead of a tree of strings, UIDs and fingerprints as numbers and bytes, timestamps as
//! seconds, and nothing stored twice. Every allocation costs a header besides its bytes, so
//! fewer of them matters as much as smaller ones. The decision's own types are rebuilt from
//! these for the one rollout being decided.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use jiff::Timestamp;

use custody_crds::WorkloadKind;

use crate::keys::{MARKS, OWNERSHIP, PROVENANCE, VISIBILITY, mark};

use super::node::NodeId;
use super::observe::{ContainerState, PodState, Revision, WorkloadState};

/// A UID as a number. Kubernetes UIDs are UUIDs; anything else (a test fixture) is hashed to
/// 128 bits, which no two of a cluster's objects share in practice.
pub type Uid = u128;

/// The number of a UID.
pub fn uid(text: &str) -> Uid {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32
        && let Ok(n) = u128::from_str_radix(&hex, 16)
    {
        return n;
    }
    let half = |seed: u8| {
        let mut h = DefaultHasher::new();
        seed.hash(&mut h);
        text.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// A small string map in one buffer: keys and values back to back, and where each ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedMap {
    text: Box<str>,
    ends: Box<[u32]>,
}

impl PackedMap {
    /// Packs a map.
    pub fn pack(map: &BTreeMap<String, String>) -> Self {
        let mut text = String::with_capacity(map.iter().map(|(k, v)| k.len() + v.len()).sum());
        let mut ends = Vec::with_capacity(map.len() * 2);
        for (k, v) in map {
            for part in [k, v] {
                text.push_str(part);
                ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            }
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The map again.
    pub fn unpack(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut start = 0usize;
        let mut parts = self.ends.iter().map(|end| {
            let end = usize::try_from(*end)
                .unwrap_or(usize::MAX)
                .min(self.text.len());
            let part = self.text.get(start..end).unwrap_or_default();
            start = end;
            part
        });
        while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
            out.insert(k.to_string(), v.to_string());
        }
        out
    }
}

/// The annotation keys the cache keeps, each stored as its position here.
pub struct AnnotationKeys(Vec<String>);

impl AnnotationKeys {
    /// The provenance keys of `vocabulary` and the controller's marks.
    pub fn new(vocabulary: &custody_crds::Vocabulary) -> Self {
        let provenance = PROVENANCE
            .iter()
            .chain(OWNERSHIP.iter())
            .chain(VISIBILITY.iter())
            .map(|k| vocabulary.key(*k).to_string())
            .chain([vocabulary.attestation().to_string()]);
        let marks = MARKS.iter().map(|m| mark(vocabulary, m));
        Self(provenance.chain(marks).collect())
    }
}

/// Annotations whose keys are [`AnnotationKeys`]: the values in one buffer, and for each its
/// key's position and where it ends. Keys not in the table are not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedAnnotations {
    values: Box<str>,
    index: Box<[(u8, u32)]>,
}

impl PackedAnnotations {
    /// Packs the annotations `keys` knows.
    pub fn pack(map: &BTreeMap<String, String>, keys: &AnnotationKeys) -> Self {
        let mut values = String::new();
        let mut index = Vec::new();
        for (slot, key) in keys.0.iter().enumerate() {
            if let (Some(value), Ok(slot)) = (map.get(key), u8::try_from(slot)) {
                values.push_str(value);
                index.push((slot, u32::try_from(values.len()).unwrap_or(u32::MAX)));
            }
        }
        Self {
            values: values.into_boxed_str(),
            index: index.into_boxed_slice(),
        }
    }

    /// The annotations again.
    pub fn unpack(&self, keys: &AnnotationKeys) -> BTreeMap<String, String> {
        let mut start = 0usize;
        self.index
            .iter()
            .filter_map(|(slot, end)| {
                let end = usize::try_from(*end)
                    .unwrap_or(usize::MAX)
                    .min(self.values.len());
                let value = self.values.get(start..end).unwrap_or_default();
                start = end;
                let key = keys.0.get(usize::from(*slot))?;
                Some((key.clone(), value.to_string()))
            })
            .collect()
    }
}

/// A timestamp in whole seconds (what the API server sends), `i64::MIN` for none.
fn seconds(t: Option<Timestamp>) -> i64 {
    t.map_or(i64::MIN, |t| t.as_second())
}

fn timestamp(seconds: i64) -> Option<Timestamp> {
    (seconds != i64::MIN)
        .then(|| Timestamp::from_second(seconds).ok())
        .flatten()
}

/// A template fingerprint as its 32 bytes; anything not `sha256:` and 64 hex digits is kept
/// as text.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fingerprint {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl Fingerprint {
    fn new(text: &str) -> Self {
        let parse = || {
            let hex = text.strip_prefix("sha256:")?;
            let mut bytes = [0u8; 32];
            if hex.len() != 64 {
                return None;
            }
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(bytes)
        };
        parse().map_or_else(|| Fingerprint::Other(text.into()), Fingerprint::Sha256)
    }

    fn text(&self) -> String {
        match self {
            Fingerprint::Sha256(bytes) => {
                let mut out = String::with_capacity(71);
                out.push_str("sha256:");
                for b in bytes {
                    for nibble in [b >> 4, b & 0x0f] {
                        out.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
                    }
                }
                out
            }
            Fingerprint::Other(text) => text.to_string(),
        }
    }
}

/// Several strings in one buffer, and where each ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Texts {
    text: Box<str>,
    ends: Box<[u32]>,
}

impl Texts {
    fn new<'a>(parts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for part in parts {
            text.push_str(part);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        Self {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    fn get(&self, i: usize) -> &str {
        let end = |i: usize| {
            self.ends
                .get(i)
                .and_then(|e| usize::try_from(*e).ok())
                .unwrap_or(0)
                .min(self.text.len())
        };
        let start = if i == 0 { 0 } else { end(i - 1) };
        self.text.get(start..end(i)).unwrap_or_default()
    }
}

/// A workload as stored: its strings in one buffer, its numbers inline, its maps packed.
pub struct StoredWorkload {
    kind: WorkloadKind,
    /// Name, namespace, UID, resourceVersion, controlling owner.
    texts: Texts,
    generation: i64,
    observed_generation: i64,
    counts: [i32; 6],
    paused: bool,
    any_annotations: bool,
    progress_deadline_exceeded_since: i64,
    unavailable_since: i64,
    fingerprint: Fingerprint,
    annotations: PackedAnnotations,
    labels: PackedMap,
}

impl StoredWorkload {
    /// Stores a workload's state.
    pub fn new(state: WorkloadState, keys: &AnnotationKeys) -> Self {
        Self {
            kind: state.kind,
            texts: Texts::new([
                state.name.as_str(),
                &state.namespace,
                &state.uid,
                &state.resource_version,
                &state.managed_by,
            ]),
            generation: state.generation,
            observed_generation: state.observed_generation,
            counts: [
                state.replicas,
                state.updated_replicas,
                state.available_replicas,
                state.total_replicas,
                state.max_unavailable,
                state.partition,
            ],
            paused: state.paused,
            any_annotations: state.any_annotations,
            progress_deadline_exceeded_since: seconds(state.progress_deadline_exceeded_since),
            unavailable_since: seconds(state.unavailable_since),
            fingerprint: Fingerprint::new(&state.template_fingerprint),
            annotations: PackedAnnotations::pack(&state.annotations, keys),
            labels: PackedMap::pack(&state.labels),
        }
    }

    /// The state back.
    pub fn state(&self, keys: &AnnotationKeys) -> WorkloadState {
        let [
            replicas,
            updated_replicas,
            available_replicas,
            total_replicas,
            max_unavailable,
            partition,
        ] = self.counts;
        WorkloadState {
            kind: self.kind,
            name: self.texts.get(0).to_string(),
            namespace: self.texts.get(1).to_string(),
            uid: self.texts.get(2).to_string(),
            resource_version: self.texts.get(3).to_string(),
            generation: self.generation,
            observed_generation: self.observed_generation,
            paused: self.paused,
            replicas,
            updated_replicas,
            available_replicas,
            total_replicas,
            max_unavailable,
            partition,
            progress_deadline_exceeded_since: timestamp(self.progress_deadline_exceeded_since),
            unavailable_since: timestamp(self.unavailable_since),
            template_fingerprint: self.fingerprint.text(),
            annotations: self.annotations.unpack(keys),
            any_annotations: self.any_annotations,
            labels: self.labels.unpack(),
            managed_by: self.texts.get(4).to_string(),
        }
    }

    /// Its kind, namespace and name.
    pub fn identity(&self) -> (WorkloadKind, &str, &str) {
        (self.kind, self.texts.get(1), self.texts.get(0))
    }
}

/// A revision as stored.
pub struct StoredRevision {
    /// Name, then the pod key when it is not the name, then the images.
    texts: Texts,
    own_pod_key: bool,
    number: i64,
    fingerprint: Fingerprint,
    /// Boxed: only restarted templates have one.
    restart_free: Option<Box<Fingerprint>>,
    annotations: PackedAnnotations,
    created: i64,
}

impl StoredRevision {
    /// Stores a revision.
    pub fn new(revision: Revision, keys: &AnnotationKeys) -> Self {
        let own_pod_key = revision.pod_key != revision.name;
        let pod_key = own_pod_key.then_some(revision.pod_key.as_str());
        let texts = Texts::new(
            std::iter::once(revision.name.as_str())
                .chain(pod_key)
                .chain(revision.images.iter().map(String::as_str)),
        );
        Self {
            texts,
            own_pod_key,
            number: revision.number,
            fingerprint: Fingerprint::new(&revision.fingerprint),
            restart_free: revision
                .restart_free
                .as_deref()
                .map(|f| Box::new(Fingerprint::new(f))),
            annotations: PackedAnnotations::pack(&revision.annotations, keys),
            created: seconds(revision.created),
        }
    }

    /// What its pods' revision reads.
    pub fn pod_key(&self) -> &str {
        self.texts.get(usize::from(self.own_pod_key))
    }

    /// The revision back.
    pub fn revision(&self, keys: &AnnotationKeys) -> Revision {
        let first_image = 1 + usize::from(self.own_pod_key);
        Revision {
            name: self.texts.get(0).to_string(),
            number: self.number,
            pod_key: self.pod_key().to_string(),
            fingerprint: self.fingerprint.text(),
            restart_free: self.restart_free.as_ref().map(|f| f.text()),
            images: (first_image..self.texts.ends.len())
                .map(|i| self.texts.get(i).to_string())
                .collect(),
            annotations: self.annotations.unpack(keys),
            created: timestamp(self.created),
        }
    }
}

/// A Pod as stored: its name, its revision (when it is not its owner ReplicaSet's name) and each
/// container's name and waiting reason in one buffer; restart counts beside; its Node as a
/// number (eight bytes, where its name would take forty and one more allocation).
pub struct StoredPod {
    texts: Texts,
    restarts: Box<[i32]>,
    node: Option<NodeId>,
    own_revision: bool,
    ready: bool,
    terminating: bool,
    disrupted: bool,
    readiness_withdrawn: bool,
    started: i64,
    ready_changed: i64,
}

impl StoredPod {
    /// Stores a Pod; `by_owner_name` when its revision is its owner ReplicaSet's name.
    pub fn new(pod: PodState, by_owner_name: bool) -> Self {
        let revision = (!by_owner_name).then_some(pod.revision.as_str());
        let texts = Texts::new(
            std::iter::once(pod.name.as_str()).chain(revision).chain(
                pod.containers
                    .iter()
                    .flat_map(|c| [c.name.as_str(), c.waiting.as_deref().unwrap_or_default()]),
            ),
        );
        Self {
            texts,
            restarts: pod.containers.iter().map(|c| c.restarts).collect(),
            node: pod.node,
            own_revision: !by_owner_name,
            ready: pod.ready,
            terminating: pod.terminating,
            disrupted: pod.disrupted,
            readiness_withdrawn: pod.readiness_withdrawn,
            started: seconds(pod.started),
            ready_changed: seconds(pod.ready_changed),
        }
    }

    /// The Node it is bound to.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }

    /// The Pod back; `owner_pod_key` is its owner revision's, used when it has none of its own.
    pub fn pod(&self, owner_pod_key: Option<&str>) -> PodState {
        let first_container = 1 + usize::from(self.own_revision);
        let revision = if self.own_revision {
            self.texts.get(1)
        } else {
            owner_pod_key.unwrap_or_default()
        };
        PodState {
            name: self.texts.get(0).to_string(),
            revision: revision.to_string(),
            started: timestamp(self.started),
            ready: self.ready,
            ready_changed: timestamp(self.ready_changed),
            terminating: self.terminating,
            disrupted: self.disrupted,
            readiness_withdrawn: self.readiness_withdrawn,
            node: self.node,
            containers: self
                .restarts
                .iter()
                .enumerate()
                .map(|(i, restarts)| {
                    let at = first_container + 2 * i;
                    let waiting = self.texts.get(at + 1);
                    ContainerState {
                        name: self.texts.get(at).to_string(),
                        restarts: *restarts,
                        waiting: (!waiting.is_empty()).then(|| waiting.to_string()),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_read_and_other_uids_hashed() {
        assert_eq!(
            uid("0f8fad5b-d9cb-469f-a165-70867728950e"),
            0x0f8f_ad5b_d9cb_469f_a165_7086_7728_950e
        );
        assert_ne!(uid("uid-web"), uid("uid-db"));
        assert_eq!(uid("uid-web"), uid("uid-web"));
    }

    #[test]
    fn packed_maps_round_trip() {
        let map: BTreeMap<String, String> = [("custody.dev/actor", "agent"), ("a", ""), ("", "b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(PackedMap::pack(&map).unpack(), map);
        assert!(PackedMap::pack(&BTreeMap::new()).unpack().is_empty());
    }

    #[test]
    fn fingerprints_are_stored_as_bytes_and_read_back_as_text() {
        let fp = custody_crds::template_fingerprint(&serde_json::json!({"spec": {}})).to_string();
        assert!(matches!(Fingerprint::new(&fp), Fingerprint::Sha256(_)));
        assert_eq!(Fingerprint::new(&fp).text(), fp);
        assert_eq!(Fingerprint::new("sha256:zz").text(), "sha256:zz");
    }

    #[test]
    fn pods_revisions_and_workloads_round_trip() {
        let t = |s| Some(Timestamp::from_second(s).unwrap());
        let pod = PodState {
            name: "db-1".into(),
            revision: "db-7f9c".into(),
            started: t(100),
            ready: false,
            ready_changed: None,
            terminating: true,
            disrupted: true,
            readiness_withdrawn: true,
            node: Some(NodeId::of("node-a")),
            containers: vec![
                ContainerState {
                    name: "app".into(),
                    restarts: 4,
                    waiting: Some("CrashLoopBackOff".into()),
                },
                ContainerState {
                    name: "sidecar".into(),
                    restarts: 0,
                    waiting: None,
                },
            ],
        };
        assert_eq!(StoredPod::new(pod.clone(), false).pod(Some("other")), pod);
        let by_owner = PodState {
            revision: "web-2".into(),
            ..pod
        };
        assert_eq!(
            StoredPod::new(by_owner.clone(), true).pod(Some("web-2")),
            by_owner
        );

        let keys = AnnotationKeys::new(&custody_crds::Vocabulary::default());
        let template = serde_json::json!({"spec": {"initContainers": [{"image": "init:1"}], "containers": [{"image": "web:2"}]}});
        let annotations: BTreeMap<String, String> =
            [("custody.dev/actor".to_string(), "agent".to_string())].into();
        let mut restarted = template.clone();
        restarted["metadata"] =
            serde_json::json!({"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}});
        for (pod_key, template) in [("web-2", &template), ("6d9f", &restarted)] {
            let revision = Revision::new("web-2".into(), 2, template, annotations.clone(), t(50))
                .with_pod_key(pod_key);
            assert_eq!(
                StoredRevision::new(revision.clone(), &keys).revision(&keys),
                revision
            );
        }

        let state = WorkloadState {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
            namespace: "shop".into(),
            uid: "uid-db".into(),
            resource_version: "42".into(),
            generation: 3,
            observed_generation: 2,
            paused: false,
            replicas: 3,
            updated_replicas: 1,
            available_replicas: 2,
            total_replicas: 3,
            max_unavailable: 1,
            partition: 1,
            progress_deadline_exceeded_since: t(7),
            unavailable_since: None,
            template_fingerprint: custody_crds::template_fingerprint(&template).to_string(),
            annotations,
            any_annotations: true,
            labels: [("app".to_string(), "db".to_string())].into(),
            managed_by: "Rollout/db".into(),
        };
        let stored = StoredWorkload::new(state.clone(), &keys);
        assert_eq!(stored.state(&keys), state);
        assert_eq!(stored.identity(), (WorkloadKind::StatefulSet, "shop", "db"));
    }

    #[test]
    fn a_pod_row_stays_eighty_bytes() {
        // Tens of thousands of these: the Node and the disruption flag fit in what was padding
        // and one word; anything more shows in the memory bench.
        assert!(std::mem::size_of::<StoredPod>() <= 80);
    }

    #[test]
    fn packed_annotations_keep_only_the_keys_read() {
        let keys = AnnotationKeys::new(&custody_crds::Vocabulary::default());
        let map: BTreeMap<String, String> = [
            ("custody.dev/actor", "agent"),
            // What observe keeps of an attestation: its digest.
            (
                "custody.dev/attestation",
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            ("custody.dev/healthy-since", "2027-01-01T00:00:00Z"),
            ("custody.dev/owner", "team-web"),
            ("custody.dev/quarantine-override", "a reason"),
            ("custody.dev/source-commit", ""),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut kept = map.clone();
        kept.remove("custody.dev/quarantine-override");
        kept.remove("kubectl.kubernetes.io/last-applied-configuration");
        assert_eq!(PackedAnnotations::pack(&map, &keys).unpack(&keys), kept);
    }
}
