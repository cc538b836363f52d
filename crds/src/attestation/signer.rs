//! Private keys: PKCS#8 PEM in, DSSE signatures out; and new key pairs.

use super::{Envelope, KeyAlgorithm, PublicKey};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

/// DER prefixes that make a raw public key a SubjectPublicKeyInfo.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a key could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Not a PEM `PRIVATE KEY`.
    #[error("not a PKCS#8 PEM private key (BEGIN PRIVATE KEY): {0}")]
    Pem(String),
    /// Neither an Ed25519 nor a P-256 key ring accepts.
    #[error("unsupported or malformed private key; use Ed25519 or ECDSA P-256 in PKCS#8")]
    Unsupported,
    /// The signing operation failed.
    #[error("signing failed")]
    Sign,
    /// The generated public key did not parse back.
    #[error("generated public key is malformed: {0}")]
    Public(#[from] super::KeyError),
}

enum Inner {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
}

/// A private key that signs attestations.
pub struct SigningKey {
    inner: Inner,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key: Ed25519 (as `openssl genpkey -algorithm ed25519` writes
    /// it, without the public key, or with it) or ECDSA P-256.
    pub fn from_pem(pem: &str) -> Result<Self, SignError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| SignError::Pem(e.to_string()))?;
        Self::from_pkcs8(der.secret_pkcs8_der())
    }

    /// Reads a DER PKCS#8 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, SignError> {
        let rng = SystemRandom::new();
        if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(Self {
                inner: Inner::Ed25519(pair),
                rng,
            });
        }
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
            .map(|pair| Self {
                inner: Inner::EcdsaP256(pair),
                rng,
            })
            .map_err(|_| SignError::Unsupported)
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            Inner::Ed25519(_) => KeyAlgorithm::Ed25519,
            Inner::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
        }
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn public_spki_der(&self) -> Vec<u8> {
        let (prefix, raw) = match &self.inner {
            Inner::Ed25519(p) => (ED25519_SPKI_PREFIX, p.public_key().as_ref()),
            Inner::EcdsaP256(p) => (P256_SPKI_PREFIX, p.public_key().as_ref()),
        };
        [prefix, raw].concat()
    }

    /// The public key.
    pub fn public_key(&self) -> Result<PublicKey, SignError> {
        Ok(PublicKey::from_spki_der(&self.public_spki_der())?)
    }

    /// Signs `message`: Ed25519 raw, or ECDSA ASN.1 DER.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        match &self.inner {
            Inner::Ed25519(p) => Ok(p.sign(message).as_ref().to_vec()),
            Inner::EcdsaP256(p) => p
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Sign),
        }
    }

    /// A DSSE envelope of `payload` signed by this key under `keyid`.
    pub fn seal(&self, payload: &[u8], keyid: &str) -> Result<Envelope, SignError> {
        Envelope::seal(payload, keyid, |pae| self.sign(pae))
    }
}

/// A new key pair, as PEM.
#[derive(Debug)]
pub struct GeneratedKey {
    /// PKCS#8 `PRIVATE KEY`.
    pub private_pem: String,
    /// SubjectPublicKeyInfo `PUBLIC KEY`.
    pub public_pem: String,
    /// The public key's fingerprint, a default key id.
    pub fingerprint: String,
}

/// Generates a key pair with the operating system's random source.
pub fn generate(algorithm: KeyAlgorithm) -> Result<GeneratedKey, SignError> {
    let rng = SystemRandom::new();
    let pkcs8 = match algorithm {
        KeyAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng),
        KeyAlgorithm::EcdsaP256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        }
    }
    .map_err(|_| SignError::Sign)?;
    let key = SigningKey::from_pkcs8(pkcs8.as_ref())?;
    let spki = key.public_spki_der();
    Ok(GeneratedKey {
        private_pem: pem_encode("PRIVATE KEY", pkcs8.as_ref()),
        public_pem: pem_encode("PUBLIC KEY", &spki),
        fingerprint: key.public_key()?.fingerprint(),
    })
}

/// PEM text of `der` under `label`, 64 characters a line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
