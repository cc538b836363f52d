//! A notice as a Slack incoming-webhook message: a fallback `text` for notifications and Block
//! Kit blocks for the channel, within Slack's limits (a message over one is refused whole, with
//! `invalid_blocks`).

use custody_crds::{NoticeKind, Severity};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Notice, State, clip};

/// A header block's text, in characters.
pub const MAX_HEADER: usize = 150;
/// A section's or a context element's text, in characters.
pub const MAX_TEXT: usize = 3000;
/// One field of a section, in characters.
pub const MAX_FIELD: usize = 2000;
/// Fields in one section.
pub const MAX_FIELDS: usize = 10;

/// The message about `notice`.
pub fn body(notice: &Notice) -> Value {
    if let State::Resolved { at } = notice.state {
        return resolved(notice, at);
    }
    let header = format!("{} {}", emoji(notice.severity), headline(notice));
    let what = [notice.explanation.as_str(), notice.summary.as_str()]
        .into_iter()
        .find(|t| !t.trim().is_empty())
        .unwrap_or(title(notice.kind));
    let mut blocks = vec![header_block(&header), section(&mrkdwn(what, MAX_TEXT))];
    blocks.extend(fields(notice));
    if !notice.evidence.is_empty() {
        let bullets: Vec<_> = notice.evidence.iter().map(|e| format!("• {e}")).collect();
        let text = format!("*Evidence*\n{}", bullets.join("\n"));
        blocks.push(section(&mrkdwn(&text, MAX_TEXT)));
    }
    blocks.extend(commands(notice));
    blocks.push(context(notice, notice.started_at));
    json!({ "text": fallback(notice, ""), "blocks": blocks })
}

/// Not sent today (Slack keeps no situation open), but a resolution must still render.
fn resolved(notice: &Notice, at: Timestamp) -> Value {
    let header = format!(":white_check_mark: Resolved: {}", headline(notice));
    let blocks = [
        header_block(&header),
        section(&mrkdwn(&fallback_text(notice), MAX_TEXT)),
        context(notice, at),
    ];
    json!({ "text": fallback(notice, "Resolved: "), "blocks": blocks })
}

/// What a notification shows, where blocks are not rendered.
fn fallback(notice: &Notice, prefix: &str) -> String {
    mrkdwn(&format!("{prefix}{}", fallback_text(notice)), MAX_TEXT)
}

fn fallback_text(notice: &Notice) -> String {
    if notice.summary.trim().is_empty() {
        headline(notice)
    } else {
        notice.summary.clone()
    }
}

const fn emoji(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    }
}

/// What happened, to what: `Reverted: shop/Deployment/web`.
fn headline(notice: &Notice) -> String {
    let namespace = notice.namespace.as_str();
    let about = match (notice.workload.as_deref(), notice.agent.as_deref()) {
        (Some(workload), _) if !namespace.is_empty() => format!("{namespace}/{workload}"),
        (Some(workload), _) => workload.to_string(),
        (None, Some(agent)) => format!("agent {agent}"),
        (None, None) => namespace.to_string(),
    };
    if about.is_empty() {
        title(notice.kind).to_string()
    } else {
        format!("{}: {about}", title(notice.kind))
    }
}

const fn title(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Reverted => "Reverted",
        NoticeKind::Alerted => "Regression not reverted",
        NoticeKind::BreakGlass => "Break-glass",
        NoticeKind::Probation => "Agent on probation",
        NoticeKind::AttestationUnreadable => "Attestation unreadable",
        NoticeKind::AnalysisInconclusive => "Analysis inconclusive",
        NoticeKind::ChangeProposed => "Change awaiting approval",
        NoticeKind::ChangeApproved => "Change approved",
        NoticeKind::ChangeRejected => "Change rejected",
    }
}

/// Plain text is shown as written: no escaping, only the limit.
fn header_block(text: &str) -> Value {
    json!({
        "type": "header",
        "text": { "type": "plain_text", "text": clip(text, MAX_HEADER), "emoji": true },
    })
}

fn section(mrkdwn: &str) -> Value {
    json!({ "type": "section", "text": { "type": "mrkdwn", "text": mrkdwn } })
}

/// The facts a responder scans for, those the notice has.
fn fields(notice: &Notice) -> Option<Value> {
    let fields: Vec<_> = [
        ("Namespace", Some(notice.namespace.as_str())),
        ("Workload", notice.workload.as_deref()),
        ("Revision", notice.revision.as_deref()),
        ("Shipped by", notice.shipped_by.as_deref()),
        ("Team", notice.team.as_deref()),
        ("Agent", notice.agent.as_deref()),
        ("Reason", Some(notice.reason.as_str())),
        ("Severity", Some(notice.severity.as_str())),
    ]
    .into_iter()
    .filter_map(|(label, value)| Some((label, value.filter(|v| !v.trim().is_empty())?)))
    .take(MAX_FIELDS)
    .map(|(label, value)| {
        let text = mrkdwn(&format!("*{label}*\n{value}"), MAX_FIELD);
        json!({ "type": "mrkdwn", "text": text })
    })
    .collect();
    (!fields.is_empty()).then(|| json!({ "type": "section", "fields": fields }))
}

/// The commands as one code block, each under its label as a shell comment, so that the block
/// can be pasted whole.
fn commands(notice: &Notice) -> Option<Value> {
    if notice.commands.is_empty() {
        return None;
    }
    let lines: Vec<_> = notice
        .commands
        .iter()
        .map(|c| format!("# {}\n{}", c.label, c.command))
        .collect();
    let heading = "*What to run*\n```";
    let fence = "```";
    let room = MAX_TEXT - heading.chars().count() - fence.len();
    let code = mrkdwn(&lines.join("\n"), room);
    Some(section(&format!("{heading}{code}{fence}")))
}

/// Which situation and notice this is, and when, in the reader's own time zone.
fn context(notice: &Notice, at: Timestamp) -> Value {
    let key = mrkdwn(&notice.situation, MAX_TEXT / 2);
    let id = mrkdwn(&notice.id, MAX_TEXT / 4);
    // Slack's date token: rendered in the reader's time zone, with RFC 3339 as the fallback.
    let when = format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{at}>",
        at.as_second()
    );
    json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("`{key}` · {id} · {when}") }],
    })
}

/// `raw` as mrkdwn text of at most `max` characters: `&`, `<` and `>` escaped as Slack
/// requires, and cut between characters, never inside an escape.
fn mrkdwn(raw: &str, max: usize) -> String {
    let width = |c: char| entity(c).map_or(1, str::len);
    let full: usize = raw.chars().map(width).sum();
    let budget = if full <= max {
        max
    } else {
        max.saturating_sub(1)
    };
    let mut out = String::with_capacity(raw.len());
    let mut used = 0;
    for c in raw.chars() {
        used += width(c);
        if used > budget {
            break;
        }
        match entity(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    if full > max {
        out.push('…');
    }
    out
}

const fn entity(c: char) -> Option<&'static str> {
    match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::oncall::sample::{sample_notice, started};

    fn texts(body: &Value) -> Vec<String> {
        let mut out = Vec::new();
        collect_texts(body, &mut out);
        out
    }

    fn collect_texts(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(text)) = map.get("text") {
                    out.push(text.clone());
                }
                map.values().for_each(|v| collect_texts(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_texts(v, out)),
            _ => {}
        }
    }

    #[test]
    fn a_revert_reads_as_a_message() {
        let body = body(&sample_notice());
        assert_eq!(
            body["text"],
            "Deployment shop/web revision 4 regressed (CrashLoop) and was reverted to revision 3"
        );
        let blocks = body["blocks"].as_array().expect("blocks");
        let kinds: Vec<_> = blocks
            .iter()
            .map(|b| b["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            kinds,
            [
                "header", "section", "section", "section", "section", "context"
            ]
        );
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(
            blocks[0]["text"]["text"],
            ":information_source: Reverted: shop/Deployment/web"
        );
        let fields = blocks[2]["fields"].as_array().expect("fields");
        assert_eq!(fields.len(), 8);
        assert_eq!(fields[0]["text"], "*Namespace*\nshop");
        assert!(texts(&blocks[3].clone()).concat().contains(
            "• CrashLoop: back-off 40s restarting failed container (pod web-7c9f5d8b6a-x2k9p"
        ));
        let commands = blocks[4]["text"]["text"].as_str().unwrap_or("");
        assert!(
            commands.contains("```# Inspect\nkubectl custody why deploy/web -n shop\n# Lift"),
            "{commands}"
        );
        assert!(commands.ends_with("--reason \"...\"```"), "{commands}");
        let context = blocks[5]["elements"][0]["text"].as_str().unwrap_or("");
        let unix = started().as_second();
        assert!(
            context.starts_with("`custody/shop/Deployment/web/reverted` · 0b6f4c1e-8d2a-4f3b-9e57-2c41d9a7e310 · <!date^"),
            "{context}"
        );
        assert!(context.contains(&format!("<!date^{unix}^")), "{context}");
    }

    #[test]
    fn the_severity_chooses_the_emoji() {
        let notice = Notice {
            kind: NoticeKind::Alerted,
            severity: Severity::Critical,
            ..sample_notice()
        };
        let header = body(&notice)["blocks"][0]["text"]["text"].clone();
        assert_eq!(
            header,
            ":rotating_light: Regression not reverted: shop/Deployment/web"
        );
    }

    #[test]
    fn mrkdwn_is_escaped_and_plain_text_is_not() {
        let notice = Notice {
            workload: Some("Deployment/a<b>&c".into()),
            explanation: "latency p99 > 2s & errors <5%".into(),
            ..sample_notice()
        };
        let body = body(&notice);
        assert_eq!(
            body["blocks"][1]["text"]["text"],
            "latency p99 &gt; 2s &amp; errors &lt;5%"
        );
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap_or("");
        assert!(header.ends_with("Deployment/a<b>&c"), "{header}");
        let workload = body["blocks"][2]["fields"][1]["text"].clone();
        assert_eq!(workload, "*Workload*\nDeployment/a&lt;b&gt;&amp;c");
    }

    #[test]
    fn long_texts_are_cut_within_slacks_limits() {
        let notice = Notice {
            workload: Some(format!("Deployment/{}", "w".repeat(300))),
            explanation: "ä&".repeat(2000),
            revision: Some("r".repeat(5000)),
            evidence: vec!["<e>".repeat(600); 10],
            commands: (0..200)
                .map(|i| crate::decide::oncall::Command {
                    label: format!("Step {i}"),
                    command: format!("kubectl custody why deploy/web-{i} -n shop"),
                })
                .collect(),
            ..sample_notice()
        };
        let body = body(&notice);
        let blocks = body["blocks"].as_array().expect("blocks");
        let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        assert_eq!(len(&blocks[0]["text"]["text"]), MAX_HEADER);
        for block in blocks {
            assert!(len(&block["text"]["text"]) <= MAX_TEXT, "{block}");
            for field in block["fields"].as_array().into_iter().flatten() {
                assert!(len(&field["text"]) <= MAX_FIELD, "{field}");
            }
        }
        let explanation = blocks[1]["text"]["text"].as_str().unwrap_or("");
        assert!(
            explanation.ends_with("ä&amp;…") || explanation.ends_with("ä…"),
            "cut inside an escape"
        );
        let commands = blocks[4]["text"]["text"].as_str().unwrap_or("");
        assert!(commands.ends_with("…```"), "the code block stays closed");
    }

    #[test]
    fn a_notice_without_workload_names_the_agent() {
        let notice = Notice {
            kind: NoticeKind::Probation,
            severity: Severity::Warning,
            namespace: String::new(),
            workload: None,
            revision: None,
            shipped_by: None,
            evidence: Vec::new(),
            commands: Vec::new(),
            ..sample_notice()
        };
        let body = body(&notice);
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(
            blocks[0]["text"]["text"],
            ":warning: Agent on probation: agent claude-code/1.0"
        );
        let fields: Vec<_> = texts(&blocks[2]).into_iter().collect();
        assert_eq!(fields.len(), 4, "{fields:?}");
        assert_eq!(blocks.len(), 4);
    }

    #[test]
    fn a_resolution_renders() {
        let body = body(&sample_notice().resolved(started()));
        let header = body["blocks"][0]["text"]["text"].as_str().unwrap_or("");
        assert_eq!(
            header,
            ":white_check_mark: Resolved: Reverted: shop/Deployment/web"
        );
        assert!(
            body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Resolved: "))
        );
    }
}
