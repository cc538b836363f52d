//! A borrowed view of a workload object: the metadata Custody judges, and its pod template left
//! as raw JSON until a rule needs it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use custody_crds::WorkloadKind;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The parts of a workload the engine reads.
#[derive(Debug, Default, Deserialize)]
pub struct WorkloadObject<'a> {
    /// Its metadata.
    #[serde(borrow, default)]
    pub metadata: Metadata<'a>,
    /// Its spec, unparsed.
    #[serde(borrow, default)]
    pub spec: Option<&'a RawValue>,
    /// Its status, unparsed (read only of a RollbackRecord, for a lift).
    #[serde(borrow, default)]
    pub status: Option<&'a RawValue>,
}

/// Object metadata, borrowed. Annotation values stay raw: only Custody's few keys are ever
/// unescaped, never `kubectl.kubernetes.io/last-applied-configuration` and its kin.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// Name.
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    /// Prefix for a generated name.
    #[serde(borrow, default)]
    pub generate_name: Option<Cow<'a, str>>,
    /// Namespace.
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations, values raw.
    #[serde(borrow, default)]
    pub annotations: Option<BTreeMap<Cow<'a, str>, &'a RawValue>>,
    /// When the object was created (absent on CREATE), as written.
    #[serde(borrow, default)]
    pub creation_timestamp: Option<Cow<'a, str>>,
    /// Owner references.
    #[serde(borrow, default)]
    pub owner_references: Option<Vec<OwnerReference<'a>>>,
}

/// An owner reference.
#[derive(Debug, Deserialize)]
pub struct OwnerReference<'a> {
    /// The owner's kind.
    #[serde(borrow, default)]
    pub kind: Cow<'a, str>,
    /// The owner's name.
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    /// Whether the owner is the managing controller.
    #[serde(default)]
    pub controller: Option<bool>,
}

impl<'a> WorkloadObject<'a> {
    /// Parses an object.
    pub fn parse(raw: &'a RawValue) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw.get())
    }

    /// The value of an annotation, unescaped. A value that is not a JSON string reads as absent.
    pub fn annotation(&self, name: &str) -> Option<Cow<'a, str>> {
        let raw = self.metadata.annotations.as_ref()?.get(name)?;
        serde_json::from_str::<Cow<'a, str>>(raw.get()).ok()
    }

    /// The controller that manages this object, if any.
    pub fn controller(&self) -> Option<&OwnerReference<'a>> {
        self.metadata
            .owner_references
            .as_ref()?
            .iter()
            .find(|r| r.controller == Some(true))
    }

    /// A name to show: the name, or the generateName prefix, or `<unnamed>`.
    pub fn display_name(&self) -> Cow<'a, str> {
        match (&self.metadata.name, &self.metadata.generate_name) {
            (Some(name), _) if !name.is_empty() => name.clone(),
            (_, Some(prefix)) => Cow::Owned(format!("{prefix}<generated>")),
            _ => Cow::Borrowed("<unnamed>"),
        }
    }

    /// The pod template that defines a revision of this kind of workload: `spec.template`, a
    /// CronJob's `spec.jobTemplate.spec.template`, or a bare Pod's `spec`.
    pub fn pod_template(
        &self,
        kind: WorkloadKind,
    ) -> Result<Option<&'a RawValue>, serde_json::Error> {
        let Some(spec) = self.spec else {
            return Ok(None);
        };
        Ok(match kind {
            WorkloadKind::Pod => Some(spec),
            WorkloadKind::CronJob => serde_json::from_str::<CronJobSpec<'a>>(spec.get())?
                .job_template
                .and_then(|j| j.spec)
                .and_then(|s| s.template),
            _ => serde_json::from_str::<TemplateSpec<'a>>(spec.get())?.template,
        })
    }
}

#[derive(Deserialize)]
struct TemplateSpec<'a> {
    #[serde(borrow, default)]
    template: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CronJobSpec<'a> {
    #[serde(borrow, default)]
    job_template: Option<JobTemplate<'a>>,
}

#[derive(Deserialize)]
struct JobTemplate<'a> {
    #[serde(borrow, default)]
    spec: Option<TemplateSpec<'a>>,
}

/// Whether two raw templates differ, so that the change makes a new revision. The apiserver
/// serializes `object` and `oldObject` with the same encoder, so equal bytes settle it without
/// parsing; otherwise compare as JSON values. A change of the restart annotation alone
/// (`kubectl rollout restart`) runs the same code again and is no new revision.
pub fn templates_differ(a: Option<&RawValue>, b: Option<&RawValue>) -> bool {
    match (a, b) {
        (None, None) => false,
        (Some(a), Some(b)) if a.get() == b.get() => false,
        (Some(a), Some(b)) => {
            let parse = |r: &RawValue| {
                serde_json::from_str::<serde_json::Value>(r.get())
                    .ok()
                    .map(without_restart)
            };
            match (parse(a), parse(b)) {
                (Some(a), Some(b)) => a != b,
                _ => true,
            }
        }
        _ => true,
    }
}

fn without_restart(mut template: serde_json::Value) -> serde_json::Value {
    custody_crds::fingerprint::remove_restart(&mut template);
    template
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn reads_escaped_annotations_lazily() {
        let doc = raw(
            r#"{"metadata":{"name":"web","annotations":{"custody.dev/owner":"team \"a\"","big":"{\"x\":1}"}}}"#,
        );
        let obj = WorkloadObject::parse(&doc).unwrap();
        assert_eq!(
            obj.annotation("custody.dev/owner").as_deref(),
            Some("team \"a\"")
        );
        assert_eq!(obj.annotation("missing"), None);
    }

    #[test]
    fn non_string_annotation_reads_as_absent() {
        let doc = raw(r#"{"metadata":{"annotations":{"custody.dev/owner":42}}}"#);
        let obj = WorkloadObject::parse(&doc).unwrap();
        assert_eq!(obj.annotation("custody.dev/owner"), None);
    }

    #[test]
    fn finds_templates_per_kind() {
        let deploy = raw(r#"{"spec":{"replicas":1,"template":{"spec":{"containers":[]}}}}"#);
        let obj = WorkloadObject::parse(&deploy).unwrap();
        assert_eq!(
            obj.pod_template(WorkloadKind::Deployment)
                .unwrap()
                .unwrap()
                .get(),
            r#"{"spec":{"containers":[]}}"#
        );
        let cron = raw(r#"{"spec":{"jobTemplate":{"spec":{"template":{"a":1}}}}}"#);
        let obj = WorkloadObject::parse(&cron).unwrap();
        assert_eq!(
            obj.pod_template(WorkloadKind::CronJob)
                .unwrap()
                .unwrap()
                .get(),
            r#"{"a":1}"#
        );
        let pod = raw(r#"{"spec":{"containers":[]}}"#);
        let obj = WorkloadObject::parse(&pod).unwrap();
        assert_eq!(
            obj.pod_template(WorkloadKind::Pod).unwrap().unwrap().get(),
            r#"{"containers":[]}"#
        );
    }

    #[test]
    fn template_difference_is_semantic() {
        let a = raw(r#"{"a":1,"b":2}"#);
        let b = raw(r#"{"b":2,"a":1}"#);
        let c = raw(r#"{"a":1,"b":3}"#);
        assert!(!templates_differ(Some(&a), Some(&b)));
        assert!(templates_differ(Some(&a), Some(&c)));
        assert!(templates_differ(Some(&a), None));
        assert!(!templates_differ(None, None));
    }

    #[test]
    fn a_restart_alone_is_no_new_revision() {
        let plain = raw(r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[]}}"#);
        let restarted = raw(
            r#"{"metadata":{"labels":{"app":"web"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-03T12:00:00Z"}},"spec":{"containers":[]}}"#,
        );
        let again = raw(
            r#"{"metadata":{"labels":{"app":"web"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-03T13:00:00Z"}},"spec":{"containers":[]}}"#,
        );
        let restarted_and_changed = raw(
            r#"{"metadata":{"labels":{"app":"web"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-12-03T13:00:00Z"}},"spec":{"containers":[{"name":"x"}]}}"#,
        );
        assert!(!templates_differ(Some(&restarted), Some(&plain)));
        assert!(!templates_differ(Some(&again), Some(&restarted)));
        assert!(templates_differ(
            Some(&restarted_and_changed),
            Some(&restarted)
        ));
    }
}
