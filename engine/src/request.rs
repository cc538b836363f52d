//! What the engine judges: one write of an object, by someone, in the engine's own terms.
//!
//! The webhook server fills it from an AdmissionReview (its codec keeps the uid and the dry-run
//! flag, which the engine never reads); `custody check`, `kubectl custody why` and the
//! controller's audit build a CREATE with [`Request::create`]. The field names follow the
//! `request` of an AdmissionReview, so a recorded one deserializes as it is.

use std::borrow::Cow;

use serde::Deserialize;

use crate::object::WorkloadObject;

/// One write to judge, borrowing from the body or the manifest it came from.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
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
    /// The object as it would be stored (absent on DELETE).
    #[serde(borrow, default)]
    pub object: Option<WorkloadObject<'a>>,
    /// The object as it is stored (UPDATE and DELETE).
    #[serde(borrow, default)]
    pub old_object: Option<WorkloadObject<'a>>,
}

impl<'a> Request<'a> {
    /// A CREATE of `object` by `user`, with no cluster behind it: what `custody check` judges
    /// for a manifest, `kubectl custody why` for a live object, and the controller's audit for
    /// a running workload.
    pub fn create(
        kind: GroupVersionKind<'a>,
        namespace: Option<&'a str>,
        name: &'a str,
        user: UserInfo<'a>,
        object: WorkloadObject<'a>,
    ) -> Self {
        Self {
            kind,
            sub_resource: None,
            operation: Operation::Create,
            namespace: namespace.map(Cow::Borrowed),
            name: Some(Cow::Borrowed(name)),
            user_info: user,
            object: Some(object),
            old_object: None,
        }
    }
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

impl<'a> GroupVersionKind<'a> {
    /// A kind named by borrowed parts.
    pub fn new(group: &'a str, version: &'a str, kind: &'a str) -> Self {
        Self {
            group: Cow::Borrowed(group),
            version: Cow::Borrowed(version),
            kind: Cow::Borrowed(kind),
        }
    }
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

impl<'a> UserInfo<'a> {
    /// A requester named by borrowed parts.
    pub fn named(username: &'a str, groups: &'a [String]) -> Self {
        Self {
            username: Cow::Borrowed(username),
            groups: groups.iter().map(|g| Cow::Borrowed(g.as_str())).collect(),
        }
    }
}

/// The `request` of an AdmissionReview body, for the unit tests that write whole reviews.
#[cfg(test)]
pub(crate) fn from_review(body: &str) -> Request<'_> {
    #[derive(Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }
    #[allow(clippy::expect_used)]
    serde_json::from_str::<Review<'_>>(body)
        .expect("an AdmissionReview with a request")
        .request
}
