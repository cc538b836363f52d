//! Public keys from PEM SubjectPublicKeyInfo: Ed25519 and ECDSA P-256 (the format `openssl
//! pkey -pubout` and `cosign generate-key-pair` write), parsed once and verified with ring.

use std::fmt;

use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// The signature algorithms Custody accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032); signatures are 64 raw bytes.
    Ed25519,
    /// ECDSA over P-256 with SHA-256; signatures are ASN.1 DER, as cosign writes them.
    EcdsaP256,
}

impl KeyAlgorithm {
    /// The algorithm's name, as shown in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key ready to verify.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    algorithm: KeyAlgorithm,
    raw: Vec<u8>,
    spki_sha256: [u8; 32],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Why a public key could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `PUBLIC KEY` PEM block.
    #[error("not a PEM PUBLIC KEY (SubjectPublicKeyInfo): {0}")]
    Pem(String),
    /// The DER is not a SubjectPublicKeyInfo.
    #[error("malformed SubjectPublicKeyInfo: {0}")]
    Der(&'static str),
    /// Another algorithm or curve.
    #[error("unsupported key algorithm; use Ed25519 or ECDSA P-256")]
    Unsupported,
}

const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

impl PublicKey {
    /// Reads the first `PUBLIC KEY` block of `pem`.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| KeyError::Pem(e.to_string()))?;
        Self::from_spki_der(der.as_ref())
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let (spki, rest) = der_take(der, 0x30)?;
        if !rest.is_empty() {
            return Err(KeyError::Der("trailing bytes"));
        }
        let (algorithm_id, rest) = der_take(spki, 0x30)?;
        let (bits, rest) = der_take(rest, 0x03)?;
        if !rest.is_empty() {
            return Err(KeyError::Der("trailing bytes in the key"));
        }
        let (oid, params) = der_take(algorithm_id, 0x06)?;
        let algorithm = if oid == OID_ED25519 && params.is_empty() {
            KeyAlgorithm::Ed25519
        } else if oid == OID_EC_PUBLIC_KEY {
            let (curve, rest) = der_take(params, 0x06)?;
            if curve != OID_P256 || !rest.is_empty() {
                return Err(KeyError::Unsupported);
            }
            KeyAlgorithm::EcdsaP256
        } else {
            return Err(KeyError::Unsupported);
        };
        let raw = match bits.split_first() {
            Some((0, key)) => key.to_vec(),
            _ => return Err(KeyError::Der("the key bit string has unused bits")),
        };
        let expected = match algorithm {
            KeyAlgorithm::Ed25519 => raw.len() == 32,
            KeyAlgorithm::EcdsaP256 => raw.len() == 65 && raw[0] == 0x04,
        };
        if !expected {
            return Err(KeyError::Der(
                "the key has the wrong length for its algorithm",
            ));
        }
        Ok(Self {
            algorithm,
            raw,
            spki_sha256: Sha256::digest(der).into(),
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// `sha256:` and the hex SHA-256 of the DER SubjectPublicKeyInfo: the same key written in
    /// two policies has the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut out = String::from("sha256:");
        for b in self.spki_sha256 {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// The SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn spki_sha256(&self) -> &[u8; 32] {
        &self.spki_sha256
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let algorithm: &dyn ring::signature::VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::Ed25519 => &ED25519,
            KeyAlgorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(algorithm, &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

/// Takes one DER element with tag `tag` from the front of `input`: its contents and the rest.
fn der_take(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), KeyError> {
    let (&found, rest) = input.split_first().ok_or(KeyError::Der("truncated"))?;
    if found != tag {
        return Err(KeyError::Der("unexpected element"));
    }
    let (&first, rest) = rest.split_first().ok_or(KeyError::Der("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return Err(KeyError::Der("unsupported length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(KeyError::Der("truncated"));
    }
    Ok(rest.split_at(len))
}
