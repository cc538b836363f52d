//! The AdmissionReview wire format (`admission.k8s.io/v1`): a borrowed decode of the request and
//! the encode of the response.
//!
//! Decoding is one pass over the body that borrows from it: `object` and `oldObject` are read
//! into [`WorkloadObject`] views (metadata parsed, annotation values and the spec left raw), so a
//! 6 KB review never becomes a tree of allocations on the admission hot path.

mod object;
mod response;

pub use object::{Metadata, OwnerReference, WorkloadObject, templates_differ};
pub use response::encode;

use serde::Deserialize;
use std::borrow::Cow;

/// The only AdmissionReview version Custody registers for.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// One admission request, borrowed from the review body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest<'a> {
    /// Echoed in the response.
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    /// The kind of the object as the webhook sees it.
    #[serde(borrow)]
    pub kind: GroupVersionKind<'a>,
    /// Set for subresource requests (`scale`, `status`).
    #[serde(borrow, default)]
    pub sub_resource: Option<Cow<'a, str>>,
    /// What is being done.
    pub operation: Operation,
    /// The object's namespace, absent for cluster-scoped objects.
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    /// The object's name; absent on CREATE with `generateName`.
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// Who is asking.
    #[serde(borrow, default)]
    pub user_info: UserInfo<'a>,
    /// Whether the request will not be persisted.
    #[serde(default, deserialize_with = "null_as_false")]
    pub dry_run: bool,
    /// The object as it would be stored (absent on DELETE).
    #[serde(borrow, default)]
    pub object: Option<WorkloadObject<'a>>,
    /// The object as it is stored (UPDATE and DELETE).
    #[serde(borrow, default)]
    pub old_object: Option<WorkloadObject<'a>>,
}

/// An object kind.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind<'a> {
    /// API group, empty for the core group.
    #[serde(borrow, default)]
    pub group: Cow<'a, str>,
    /// API version.
    #[serde(borrow, default)]
    pub version: Cow<'a, str>,
    /// Kind.
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
}

/// The admission operation.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// An object is created.
    Create,
    /// An object is replaced or patched.
    Update,
    /// An object is deleted.
    Delete,
    /// A connect (exec, attach, port-forward).
    Connect,
}

impl Operation {
    /// The operation as Kubernetes spells it, a fixed metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The authenticated requester.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    /// User name, e.g. `system:serviceaccount:argocd:argocd-application-controller`.
    #[serde(borrow, default)]
    pub username: Cow<'a, str>,
    /// Groups the user belongs to.
    #[serde(borrow, default)]
    pub groups: Vec<Cow<'a, str>>,
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
    request: Option<AdmissionRequest<'a>>,
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
    envelope.request.ok_or(DecodeError::NoRequest)
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
