//! Opened envelopes by digest, so a re-apply or a server dry run of a signed object does not pay
//! for the signature check twice. Bounded: the oldest entry goes first.
//!
//! Only successes are kept, and only the expensive part (parsing and the signature): the key's
//! window, its scope and the comparison with the object run on every request, and the key is
//! looked up again by id and fingerprint, so a key removed from a policy stops vouching at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use custody_crds::attestation::{CompiledKey, Failure, Opened, open};
use sha2::{Digest, Sha256};

/// The default number of envelopes remembered.
pub const DEFAULT_CAPACITY: usize = 4096;

type CacheKey = [u8; 32];

/// A bounded cache of opened envelopes.
#[derive(Debug)]
pub struct AttestationCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<CacheKey, Arc<Opened>>,
    order: VecDeque<CacheKey>,
}

impl Default for AttestationCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl AttestationCache {
    /// A cache that keeps at most `capacity` envelopes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Opens `envelope` with a policy's `keys`, or returns what opening it did before. Keyed by
    /// the policy too: two policies trusting different keys open the same envelope differently.
    pub fn open(
        &self,
        policy: &str,
        envelope: &str,
        keys: &[CompiledKey],
    ) -> Result<Arc<Opened>, Failure> {
        let mut hasher = Sha256::new();
        hasher.update(policy.as_bytes());
        hasher.update([0]);
        hasher.update(envelope.as_bytes());
        let key: CacheKey = hasher.finalize().into();
        if let Some(hit) = self.lock().entries.get(&key) {
            return Ok(Arc::clone(hit));
        }
        let opened = Arc::new(open(envelope, keys)?);
        let mut inner = self.lock();
        if inner.entries.insert(key, Arc::clone(&opened)).is_none() {
            inner.order.push_back(key);
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.entries.remove(&old);
                }
            }
        }
        Ok(opened)
    }

    /// How many envelopes are remembered.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent map (inserts are single calls).
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use custody_crds::TrustedKey;
    use custody_crds::attestation::SigningKey;

    fn key_and_envelope(run: &str) -> (Vec<CompiledKey>, String) {
        let signer =
            SigningKey::from_pem(include_str!("../../../testkit/fixtures/keys/ed25519.key"))
                .unwrap();
        let trusted = TrustedKey {
            key_id: "k".into(),
            public_key: include_str!("../../../testkit/fixtures/keys/ed25519.pub").into(),
            ..TrustedKey::default()
        };
        let statement = serde_json::json!({
            "_type": custody_crds::attestation::STATEMENT_TYPE,
            "subject": [{"name": format!("Deployment/shop/{run}"), "digest": {"sha256": "00"}}],
            "predicateType": custody_crds::attestation::PREDICATE_TYPE,
            "predicate": {"builder": {"id": "test"}, "annotations": {}}
        });
        let envelope = signer.seal(statement.to_string().as_bytes(), "k").unwrap();
        (
            vec![CompiledKey::compile(&trusted).unwrap()],
            serde_json::to_string(&envelope).unwrap(),
        )
    }

    #[test]
    fn a_second_open_is_a_hit_and_the_cache_stays_bounded() {
        let cache = AttestationCache::with_capacity(2);
        let (keys, envelope) = key_and_envelope("web");
        let first = cache.open("p", &envelope, &keys).unwrap();
        let second = cache.open("p", &envelope, &keys).unwrap();
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second open is the cached one"
        );
        assert_eq!(cache.len(), 1);
        for policy in ["q", "r", "s"] {
            cache.open(policy, &envelope, &keys).unwrap();
        }
        assert_eq!(cache.len(), 2, "the oldest entries went");
        let fresh = cache.open("p", &envelope, &keys).unwrap();
        assert!(!Arc::ptr_eq(&first, &fresh), "evicted, so opened again");
    }

    #[test]
    fn failures_are_not_kept() {
        let cache = AttestationCache::default();
        let (keys, envelope) = key_and_envelope("web");
        let tampered = envelope.replacen("\"sig\":\"", "\"sig\":\"AAAA", 1);
        assert!(cache.open("p", &tampered, &keys).is_err());
        assert!(cache.is_empty());
    }
}
