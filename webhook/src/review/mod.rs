//! The AdmissionReview wire format (`admission.k8s.io/v1`): a borrowed decode of the request and
//! the encode of the response.
//!
//! Decoding is one pass over the body that borrows from it: `object` and `oldObject` are read
//! into the engine's [`WorkloadObject`] views (metadata parsed, annotation values and the spec left raw), so a
//! 6 KB review never becomes a tree of allocations on the admission hot path.

mod response;

pub use response::encode;

use std::borrow::Cow;
use std::ops::Deref;

use custody_engine::{GroupVersionKind, Operation, Request, UserInfo, WorkloadObject};
use serde::Deserialize;

/// The only AdmissionReview version Custody registers for.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// One admission request, borrowed from the review body: the engine's [`Request`], and what
/// only the wire carries (the uid the response echoes, the dry-run flag the metrics read). It
/// dereferences to the request, so it is passed to the engine as it is.
#[derive(Debug)]
pub struct AdmissionRequest<'a> {
    /// Echoed in the response.
    pub uid: Cow<'a, str>,
    /// Whether the request will not be persisted.
    pub dry_run: bool,
    /// What the engine judges.
    pub request: Request<'a>,
}

impl<'a> Deref for AdmissionRequest<'a> {
    type Target = Request<'a>;

    fn deref(&self) -> &Request<'a> {
        &self.request
    }
}

/// The `request` of an AdmissionReview as it arrives; split into [`AdmissionRequest`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: GroupVersionKind<'a>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    operation: Operation,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_info: UserInfo<'a>,
    #[serde(default, deserialize_with = "null_as_false")]
    dry_run: bool,
    #[serde(borrow, default)]
    object: Option<WorkloadObject<'a>>,
    #[serde(borrow, default)]
    old_object: Option<WorkloadObject<'a>>,
}

impl<'a> From<WireRequest<'a>> for AdmissionRequest<'a> {
    fn from(wire: WireRequest<'a>) -> Self {
        Self {
            uid: wire.uid,
            dry_run: wire.dry_run,
            request: Request {
                kind: wire.kind,
                sub_resource: wire.sub_resource,
                operation: wire.operation,
                namespace: wire.namespace,
                name: wire.name,
                user_info: wire.user_info,
                object: wire.object,
                old_object: wire.old_object,
            },
        }
    }
}

fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<WireRequest<'a>>,
}

/// Only the type fields, to explain a body that is not a v1 AdmissionReview.
#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
}

/// Why a body is not an AdmissionReview Custody can answer.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("the body is not a valid AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    /// Another kind or version.
    #[error(
        "expected an AdmissionReview of apiVersion {API_VERSION}, got kind {kind:?} apiVersion {api_version:?}; register the webhook with admissionReviewVersions: [v1]"
    )]
    WrongType {
        /// The kind the body declared.
        kind: String,
        /// The apiVersion the body declared.
        api_version: String,
    },
    /// No `request` field.
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// Decodes an AdmissionReview body, borrowing from it.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<'_>, DecodeError> {
    let envelope: Envelope<'_> = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(error) => {
            // A request of another version may not even have our shape: say which it is.
            if let Ok(t) = serde_json::from_slice::<TypeOnly<'_>>(body) {
                check_type(t.kind, t.api_version)?;
            }
            return Err(error.into());
        }
    };
    check_type(envelope.kind, envelope.api_version)?;
    envelope
        .request
        .map(AdmissionRequest::from)
        .ok_or(DecodeError::NoRequest)
}

fn check_type(
    kind: Option<Cow<'_, str>>,
    api_version: Option<Cow<'_, str>>,
) -> Result<(), DecodeError> {
    let kind = kind.unwrap_or_default();
    let api_version = api_version.unwrap_or_default();
    if kind == "AdmissionReview" && api_version == API_VERSION {
        Ok(())
    } else {
        Err(DecodeError::WrongType {
            kind: kind.into_owned(),
            api_version: api_version.into_owned(),
        })
    }
}
