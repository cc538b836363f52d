//! Signed provenance: a DSSE envelope around an in-toto Statement v1 whose subject is a
//! workload's pod template and whose predicate carries its provenance and ownership
//! annotations.
//!
//! `custody stamp --sign` builds the statement ([`Statement::for_claim`]) and signs it; the
//! webhook, the offline CLI and the controller verify it ([`verify`]) against the keys a policy
//! trusts, with the time passed in. Verification is pure: no clock, no network, no files.
//! Signing ([`SigningKey`], for `custody stamp --sign` and `custody keygen`) lives here too, so
//! that the CLI and the tests that forge envelopes share one signer; it reads the operating
//! system's random source for ECDSA nonces and new keys, and nothing else.

mod defaults;
mod diff;
mod dsse;
mod image;
mod keys;
mod schema;
mod signer;
mod statement;
mod template;
mod verify;

pub use diff::{Change, Difference, describe, differences, template_path};
pub use dsse::{Envelope, EnvelopeSignature, PAYLOAD_TYPE, pae};
pub use keys::{KeyAlgorithm, KeyError, PublicKey};
pub use signer::{GeneratedKey, SignError, SigningKey, generate, pem_encode};
pub use statement::{
    Builder, Claim, Dependency, MAX_SIGNED_TEMPLATE_BYTES, PREDICATE_TYPE, Provenance,
    ResourceDescriptor, SIGNED_KEYS, STATEMENT_TYPE, Statement, subject_name,
};
pub use template::{
    apply_server_defaults, normalized_template, scheduled_pod_digest, subject_digest,
    subject_digest_of,
};
pub use verify::{CompiledKey, Failure, FailureCode, Opened, Verified, judge, open, verify};
