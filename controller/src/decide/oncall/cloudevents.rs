//! A notice as a CloudEvents 1.0 event in structured mode: the context attributes beside the
//! notice's JSON as `data`, and Custody's own extension attributes.

use serde_json::{Map, Value};

use super::{Notice, State};

/// The `source` when a notice names none: the attribute is required and non-empty.
const FALLBACK_SOURCE: &str = "/apis/custody.dev";

/// The event about `notice`.
pub fn body(notice: &Notice) -> Value {
    let (state, time) = match notice.state {
        State::Firing { .. } => ("firing", notice.started_at),
        State::Resolved { at } => ("resolved", at),
    };
    let source = if notice.source.is_empty() {
        FALLBACK_SOURCE
    } else {
        &notice.source
    };
    let time = time.to_string();
    let mut event = Map::new();
    let attributes = [
        ("specversion", "1.0"),
        ("id", notice.id.as_str()),
        ("source", source),
        ("type", notice.kind.cloudevent_type()),
        ("subject", notice.subject.as_str()),
        ("time", time.as_str()),
        ("datacontenttype", "application/json"),
        // Extension names are lowercase letters and digits, at most 20 of them, by the spec.
        ("custodystate", state),
        ("custodyseverity", notice.severity.as_str()),
        ("custodysituation", notice.situation.as_str()),
    ];
    for (name, value) in attributes {
        // The spec forbids an empty attribute value: absent instead.
        if !value.is_empty() {
            event.insert(name.into(), value.into());
        }
    }
    event.insert("data".into(), notice.data.clone());
    event.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::oncall::sample::{sample_notice, started};
    use jiff::SignedDuration;
    use serde_json::json;

    #[test]
    fn a_revert_is_a_structured_event_with_its_record_as_data() {
        let notice = sample_notice();
        let event = body(&notice);
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["id"], "0b6f4c1e-8d2a-4f3b-9e57-2c41d9a7e310");
        assert_eq!(event["source"], notice.source.as_str());
        assert_eq!(event["type"], "dev.custody.revision.reverted.v1");
        assert_eq!(event["subject"], "Deployment/web");
        assert_eq!(event["time"], "2026-03-02T09:14:07Z");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(event["data"], notice.data);
        assert_eq!(event["custodystate"], "firing");
        assert_eq!(event["custodyseverity"], "info");
        assert_eq!(
            event["custodysituation"],
            "custody/shop/Deployment/web/reverted"
        );
    }

    #[test]
    fn a_resolution_is_the_same_type_at_its_own_time() {
        let at = started() + SignedDuration::from_secs(3600);
        let event = body(&sample_notice().resolved(at));
        assert_eq!(event["type"], "dev.custody.revision.reverted.v1");
        assert_eq!(event["custodystate"], "resolved");
        assert_eq!(event["time"], at.to_string());
        assert_eq!(event["id"], "0b6f4c1e-8d2a-4f3b-9e57-2c41d9a7e310/resolved");
    }

    #[test]
    fn extension_names_are_what_the_spec_allows() {
        let event = body(&sample_notice());
        let names = event
            .as_object()
            .map(|e| e.keys().cloned().collect::<Vec<_>>());
        for name in names.unwrap_or_default() {
            assert!(name.len() <= 20, "{name}");
            let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
            assert!(name.chars().all(allowed), "{name}");
        }
    }

    #[test]
    fn empty_attributes_are_left_out_and_the_source_is_never_empty() {
        let notice = Notice {
            subject: String::new(),
            source: String::new(),
            data: json!(null),
            ..sample_notice()
        };
        let event = body(&notice);
        assert!(event.get("subject").is_none());
        assert_eq!(event["source"], FALLBACK_SOURCE);
    }
}
