//! What the cache keeps of a signed revision's attestation: its digest, not the envelope (a
//! DSSE envelope of a few kB on every signed revision; ten thousand signed workloads would
//! otherwise hold tens of MB that are read only when a regression is decided or reverted).

use sha2::{Digest as _, Sha256};

/// What the cache keeps of an attestation annotation: `sha256:` and the envelope's digest in
/// hex. Enough to tell whether the revision is signed, and whether the envelope read later is
/// the one the cache saw.
pub fn digest(envelope: &str) -> String {
    let hash = Sha256::digest(envelope.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_sha256_in_hex() {
        let d = digest("{\"payload\":\"x\"}");
        assert_eq!(d.len(), 71);
        assert!(d.starts_with("sha256:"), "{d}");
        assert_eq!(d, digest("{\"payload\":\"x\"}"));
        assert_ne!(d, digest("{\"payload\":\"y\"}"));
        // The well-known digest of the empty string, so it is the standard sha256.
        assert_eq!(
            digest(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
