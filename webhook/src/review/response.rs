//! Encoding the AdmissionReview response.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::API_VERSION;
use custody_engine::Decision;

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
