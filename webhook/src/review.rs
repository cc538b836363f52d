//! The AdmissionReview wire format (`admission.k8s.io/v1`): a borrowed decode of the request and
//! the encode of the response.
//!
//! Decoding borrows from the request body and leaves `object` and `oldObject` as raw JSON: the
//! engine reads only the few fields it judges, so a 6 KB review never becomes a tree of
//! allocations on the admission hot path.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::engine::Decision;

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
    pub object: Option<&'a RawValue>,
    /// The object as it is stored (UPDATE and DELETE).
    #[serde(borrow, default)]
    pub old_object: Option<&'a RawValue>,
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
    request: Option<&'a RawValue>,
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
    let envelope: Envelope<'_> = serde_json::from_slice(body)?;
    let kind = envelope.kind.unwrap_or_default();
    let api_version = envelope.api_version.unwrap_or_default();
    if kind != "AdmissionReview" || api_version != API_VERSION {
        return Err(DecodeError::WrongType {
            kind: kind.into_owned(),
            api_version: api_version.into_owned(),
        });
    }
    let request = envelope.request.ok_or(DecodeError::NoRequest)?;
    Ok(serde_json::from_str(request.get())?)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Status<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
}

#[derive(Serialize)]
struct Details<'a> {
    causes: Vec<Cause<'a>>,
}

#[derive(Serialize)]
struct Cause<'a> {
    reason: &'static str,
    message: &'a str,
    field: &'a str,
}

/// Encodes the AdmissionReview response for `decision`.
///
/// A denial carries the human message in `status.message` and one `status.details.causes`
/// entry per violation (reason = the violation code, field = where to fix it), which the
/// apiserver passes through to the client unchanged: an agent can act on them without parsing
/// prose.
pub fn encode(uid: &str, decision: &Decision) -> Vec<u8> {
    let status = (!decision.allowed).then(|| Status {
        status: "Failure",
        code: decision.code,
        reason: reason_for(decision.code),
        message: decision.message.as_deref().unwrap_or("denied by Custody"),
        details: (!decision.violations.is_empty()).then(|| Details {
            causes: decision
                .violations
                .iter()
                .filter(|v| v.blocks())
                .map(|v| Cause {
                    reason: v.code.as_str(),
                    message: &v.message,
                    field: &v.field,
                })
                .collect(),
        }),
    });
    let review = ResponseReview {
        api_version: API_VERSION,
        kind: "AdmissionReview",
        response: Response {
            uid,
            allowed: decision.allowed,
            status,
            warnings: &decision.warnings,
            audit_annotations: &decision.audit_annotations,
        },
    };
    // Serializing these plain structs cannot fail; fall back to a minimal denial if it ever did.
    serde_json::to_vec(&review).unwrap_or_else(|error| minimal_denial(uid, &error))
}

fn minimal_denial(uid: &str, error: &dyn fmt::Display) -> Vec<u8> {
    let message = format!("Custody could not encode its answer: {error}");
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": false, "status": {"code": 500, "message": message}}
    })
    .to_string()
    .into_bytes()
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        403 => "Forbidden",
        422 => "Invalid",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Forbidden",
    }
}
