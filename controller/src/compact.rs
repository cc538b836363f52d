//! How the cache stores what [`crate::observe`] reduces, so that tens of thousands of objects fit
//! in a few tens of megabytes: small maps packed into one allocation instead of a tree of
//! strings, UIDs as 128-bit numbers, boxed strings instead of growable ones, and nothing stored
//! twice. The decision's own types are rebuilt from these for the one rollout being decided.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use jiff::Timestamp;

use crate::observe::{ContainerState, PodState, Revision, WorkloadState};

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
        let provenance = crate::observe::PROVENANCE
            .iter()
            .map(|k| vocabulary.key(*k).to_string());
        let marks = [
            crate::decide::marks::HEALTHY_SINCE,
            crate::decide::marks::REVERTED,
            crate::decide::marks::ALERTED,
        ]
        .iter()
        .map(|m| crate::decide::mark(vocabulary, m));
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

/// A workload as stored: its state with the maps packed beside it.
pub struct StoredWorkload {
    state: WorkloadState,
    annotations: PackedAnnotations,
    labels: PackedMap,
}

impl StoredWorkload {
    /// Stores a workload's state.
    pub fn new(mut state: WorkloadState, keys: &AnnotationKeys) -> Self {
        let annotations = PackedAnnotations::pack(&std::mem::take(&mut state.annotations), keys);
        let labels = PackedMap::pack(&std::mem::take(&mut state.labels));
        state.name.shrink_to_fit();
        state.namespace.shrink_to_fit();
        Self {
            state,
            annotations,
            labels,
        }
    }

    /// The state back.
    pub fn state(&self, keys: &AnnotationKeys) -> WorkloadState {
        WorkloadState {
            annotations: self.annotations.unpack(keys),
            labels: self.labels.unpack(),
            ..self.state.clone()
        }
    }

    /// Its kind, namespace and name.
    pub fn identity(&self) -> (custody_crds::WorkloadKind, &str, &str) {
        (self.state.kind, &self.state.namespace, &self.state.name)
    }
}

/// A revision as stored.
pub struct StoredRevision {
    name: Box<str>,
    number: i64,
    /// `None` when its pods are known by its name (a ReplicaSet).
    pod_key: Option<Box<str>>,
    fingerprint: Box<str>,
    images: Box<[Box<str>]>,
    annotations: PackedAnnotations,
    created: Option<Timestamp>,
}

impl StoredRevision {
    /// Stores a revision.
    pub fn new(revision: Revision, keys: &AnnotationKeys) -> Self {
        let pod_key = (revision.pod_key != revision.name).then(|| revision.pod_key.into());
        Self {
            name: revision.name.into(),
            number: revision.number,
            pod_key,
            fingerprint: revision.fingerprint.into(),
            images: revision.images.into_iter().map(Into::into).collect(),
            annotations: PackedAnnotations::pack(&revision.annotations, keys),
            created: revision.created,
        }
    }

    /// What its pods' revision reads.
    pub fn pod_key(&self) -> &str {
        self.pod_key.as_deref().unwrap_or(&self.name)
    }

    /// The revision back.
    pub fn revision(&self, keys: &AnnotationKeys) -> Revision {
        Revision {
            name: self.name.to_string(),
            number: self.number,
            pod_key: self.pod_key().to_string(),
            fingerprint: self.fingerprint.to_string(),
            images: self.images.iter().map(ToString::to_string).collect(),
            annotations: self.annotations.unpack(keys),
            created: self.created,
        }
    }
}

struct StoredContainer {
    name: Box<str>,
    restarts: i32,
    waiting: Option<Box<str>>,
}

/// A Pod as stored.
pub struct StoredPod {
    name: Box<str>,
    /// `None` when it is its owner ReplicaSet's (whose name its revision reads).
    revision: Option<Box<str>>,
    started: Option<Timestamp>,
    ready_changed: Option<Timestamp>,
    ready: bool,
    terminating: bool,
    containers: Box<[StoredContainer]>,
}

impl StoredPod {
    /// Stores a Pod; `by_owner_name` when its revision is its owner ReplicaSet's name.
    pub fn new(pod: PodState, by_owner_name: bool) -> Self {
        Self {
            name: pod.name.into(),
            revision: (!by_owner_name).then(|| pod.revision.into()),
            started: pod.started,
            ready_changed: pod.ready_changed,
            ready: pod.ready,
            terminating: pod.terminating,
            containers: pod
                .containers
                .into_iter()
                .map(|c| StoredContainer {
                    name: c.name.into(),
                    restarts: c.restarts,
                    waiting: c.waiting.map(Into::into),
                })
                .collect(),
        }
    }

    /// The Pod back; `owner_pod_key` is its owner revision's, used when it has none of its own.
    pub fn pod(&self, owner_pod_key: Option<&str>) -> PodState {
        PodState {
            name: self.name.to_string(),
            revision: self
                .revision
                .as_deref()
                .or(owner_pod_key)
                .unwrap_or_default()
                .to_string(),
            started: self.started,
            ready: self.ready,
            ready_changed: self.ready_changed,
            terminating: self.terminating,
            containers: self
                .containers
                .iter()
                .map(|c| ContainerState {
                    name: c.name.to_string(),
                    restarts: c.restarts,
                    waiting: c.waiting.as_deref().map(str::to_string),
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
    fn packed_annotations_keep_only_the_keys_read() {
        let keys = AnnotationKeys::new(&custody_crds::Vocabulary::default());
        let map: BTreeMap<String, String> = [
            ("custody.dev/actor", "agent"),
            ("custody.dev/healthy-since", "2027-01-01T00:00:00Z"),
            ("custody.dev/owner", "team-web"),
            ("custody.dev/source-commit", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut kept = map.clone();
        kept.remove("custody.dev/owner");
        assert_eq!(PackedAnnotations::pack(&map, &keys).unpack(&keys), kept);
    }
}
