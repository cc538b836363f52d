//! The receivers' own published schemas for the notice bodies Custody sends (`schemas/`, with
//! their sources in `schemas/README.md`), and [`check`], which judges a body against one. Each
//! schema is compiled once. Beside the schema, `check` applies the few rules the receiver
//! enforces that its schema does not state (Slack's text limits, Alertmanager's end not before
//! its start, PagerDuty's key and summary lengths, CloudEvents' attribute names): a body a
//! receiver refuses must fail here too.

use std::sync::LazyLock;

use jsonschema::{Draft, Validator};
use serde_json::{Map, Value, json};

const ALERTMANAGER_OPENAPI: &str = include_str!("../schemas/alertmanager-openapi.yaml");
const PAGERDUTY_OPENAPI: &str = include_str!("../schemas/pagerduty-events-v2.json");
const SLACK: &str = include_str!("../schemas/slack-incoming-webhook.json");
const CLOUDEVENTS: &str = include_str!("../schemas/cloudevents.json");

/// The formats [`check`] knows, as `NotifyFormat::as_str` spells them.
pub const FORMATS: [&str; 4] = ["alertmanager", "slack", "pagerduty", "cloudevents"];

type Compiled = Result<Validator, String>;

static ALERTMANAGER: LazyLock<Compiled> = LazyLock::new(|| {
    let doc: Value = serde_saphyr::from_str(ALERTMANAGER_OPENAPI)
        .map_err(|e| format!("alertmanager-openapi.yaml: {e}"))?;
    // Swagger 2.0's schemas are draft 4's; the root points into the document's own definitions.
    let root = json!({"$ref": "#/definitions/postableAlerts", "definitions": doc["definitions"]});
    compile("alertmanager", Draft::Draft4, &root)
});

static PAGERDUTY: LazyLock<Compiled> = LazyLock::new(|| {
    let mut root: Value = serde_json::from_str(PAGERDUTY_OPENAPI)
        .map_err(|e| format!("pagerduty-events-v2.json: {e}"))?;
    // The event's schema is inline in the `/enqueue` operation; the whole document stays the
    // root so that its `#/components/schemas/...` references resolve. OpenAPI 3.0's schema
    // objects are draft 4's plus keywords (`nullable`, `example`) a validator ignores.
    let event = "#/paths/~1enqueue/post/requestBody/content/application~1json/schema";
    root["$ref"] = event.into();
    compile("pagerduty", Draft::Draft4, &root)
});

static SLACK_MESSAGE: LazyLock<Compiled> = LazyLock::new(|| json_schema("slack", SLACK));

static CLOUDEVENT: LazyLock<Compiled> = LazyLock::new(|| json_schema("cloudevents", CLOUDEVENTS));

fn json_schema(format: &str, text: &str) -> Compiled {
    let schema: Value = serde_json::from_str(text).map_err(|e| format!("{format}: {e}"))?;
    compile(format, Draft::Draft7, &schema)
}

fn compile(format: &str, draft: Draft, schema: &Value) -> Compiled {
    jsonschema::options()
        .with_draft(draft)
        // A body with a malformed timestamp is refused by the receiver, so it fails here.
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| format!("the {format} schema does not compile: {e}"))
}

/// Whether `body` is what a receiver of `format` accepts: its published schema, then the rules
/// the receiver applies beyond it. The error lists every problem, each led by the JSON pointer
/// of the part at fault.
pub fn check(format: &str, body: &Value) -> Result<(), Vec<String>> {
    let (compiled, rules): (&Compiled, fn(&Value, &mut Vec<String>)) = match format {
        "alertmanager" => (&ALERTMANAGER, alertmanager_rules),
        "slack" => (&SLACK_MESSAGE, slack_rules),
        "pagerduty" => (&PAGERDUTY, pagerduty_rules),
        "cloudevents" => (&CLOUDEVENT, cloudevents_rules),
        other => {
            return Err(vec![format!(
                "no schema for format {other:?}; known: {FORMATS:?}"
            )]);
        }
    };
    let validator = compiled.as_ref().map_err(|e| vec![e.clone()])?;
    let mut problems: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    rules(body, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Alertmanager's `Alert.Validate`, after it drops empty labels and fills in a missing start.
fn alertmanager_rules(body: &Value, problems: &mut Vec<String>) {
    for (i, alert) in body.as_array().into_iter().flatten().enumerate() {
        let labels = alert["labels"].as_object();
        let present = labels
            .into_iter()
            .flatten()
            .any(|(_, v)| v.as_str().is_some_and(|v| !v.is_empty()));
        if !present {
            problems.push(format!("/{i}/labels: at least one label pair required"));
        }
        let time = |name: &str| alert[name].as_str()?.parse::<jiff::Timestamp>().ok();
        if let (Some(starts), Some(ends)) = (time("startsAt"), time("endsAt"))
            && ends < starts
        {
            problems.push(format!("/{i}/endsAt: start time must be before end time"));
        }
    }
}

/// The Events API v2's documented limits, and the payload a trigger needs.
fn pagerduty_rules(body: &Value, problems: &mut Vec<String>) {
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    if chars(&body["dedup_key"]) > 255 {
        problems.push("/dedup_key: longer than 255 characters".into());
    }
    match body["event_action"].as_str() {
        Some("trigger") if body.get("payload").is_none() => {
            problems.push("/payload: a trigger needs a payload".into());
        }
        Some("acknowledge" | "resolve") if body.get("dedup_key").is_none() => {
            problems.push("/dedup_key: required unless the event is a trigger".into());
        }
        _ => {}
    }
    if chars(&body["payload"]["summary"]) > 1024 {
        problems.push("/payload/summary: longer than 1024 characters".into());
    }
}

/// CloudEvents 1.0: the version, and attribute names (every member but the data) of lowercase
/// ASCII letters and digits, at most 20 of them.
fn cloudevents_rules(body: &Value, problems: &mut Vec<String>) {
    if body.get("specversion").is_some() && body["specversion"] != "1.0" {
        problems.push("/specversion: not 1.0".into());
    }
    let members = body.as_object().into_iter().flat_map(Map::keys);
    for name in members.filter(|n| !matches!(n.as_str(), "data" | "data_base64")) {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if name.is_empty() || name.len() > 20 || !name.chars().all(allowed) {
            problems.push(format!("/{name}: not a CloudEvents attribute name"));
        }
    }
    if body.get("data").is_some() && body.get("data_base64").is_some() {
        problems.push("/data_base64: data and data_base64 both present".into());
    }
}

/// Block Kit's limits, stated in Slack's reference and the SDK's comments but not in its types:
/// Slack refuses a message over one with `invalid_blocks`.
fn slack_rules(body: &Value, problems: &mut Vec<String>) {
    let blocks = body["blocks"].as_array().map_or(&[][..], Vec::as_slice);
    if blocks.len() > 50 {
        problems.push("/blocks: more than 50 blocks".into());
    }
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("/blocks/{i}");
        match block["type"].as_str() {
            Some("header") => limit(problems, &format!("{at}/text"), &block["text"], 150),
            Some("section") => {
                limit(problems, &format!("{at}/text"), &block["text"], 3000);
                let fields = block["fields"].as_array().map_or(&[][..], Vec::as_slice);
                if fields.len() > 10 {
                    problems.push(format!("{at}/fields: more than 10 fields"));
                }
                for (j, field) in fields.iter().enumerate() {
                    limit(problems, &format!("{at}/fields/{j}"), field, 2000);
                }
            }
            Some("context") => {
                let elements = block["elements"].as_array().map_or(&[][..], Vec::as_slice);
                if elements.len() > 10 {
                    problems.push(format!("{at}/elements: more than 10 elements"));
                }
                for (j, element) in elements.iter().enumerate() {
                    limit(problems, &format!("{at}/elements/{j}"), element, 3000);
                }
            }
            _ => {}
        }
    }
}

/// A text object's text: at least one character, at most `max`.
fn limit(problems: &mut Vec<String>, at: &str, object: &Value, max: usize) {
    let Some(text) = object["text"].as_str() else {
        return;
    };
    let n = text.chars().count();
    if n == 0 || n > max {
        problems.push(format!("{at}/text: {n} characters, not 1 to {max}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles() {
        for (format, compiled) in [
            ("alertmanager", &*ALERTMANAGER),
            ("pagerduty", &*PAGERDUTY),
            ("slack", &*SLACK_MESSAGE),
            ("cloudevents", &*CLOUDEVENT),
        ] {
            assert!(compiled.is_ok(), "{format}: {:?}", compiled.as_ref().err());
        }
    }

    #[test]
    fn an_unknown_format_is_an_error_not_a_pass() {
        let err = check("teams", &json!({})).expect_err("unknown");
        assert!(err[0].contains("no schema for format \"teams\""), "{err:?}");
    }
}
