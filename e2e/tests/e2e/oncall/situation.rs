//! One situation of the on-call scenario, from its record to its resolution: what Alertmanager
//! holds and routes, what each receiver got, and what the record says was sent.

use std::time::Duration;

use custody_e2e::wait_for;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use super::ROUTING_KEY;
use super::receiver::Inbox;
use crate::alertmanager::Alertmanager;
use crate::desk::Desk;
use crate::support::Ctx;

/// The formats of the team's targets.
const FORMATS: [&str; 4] = ["alertmanager", "slack", "pagerduty", "cloudevents"];
/// The formats that are sent the resolution too.
const RESOLVING: [&str; 2] = ["alertmanager", "pagerduty"];
/// How long each step may take once its cause happened (the controller retries a failed send).
const STEP: Duration = Duration::from_secs(60);

/// What a situation's notices must say, by kind.
pub(super) struct Expected {
    action: &'static str,
    kind: &'static str,
    alertname: &'static str,
    severity: &'static str,
    cloudevent: &'static str,
}

pub(super) const REVERTED: Expected = Expected {
    action: "Reverted",
    kind: "reverted",
    alertname: "CustodyReverted",
    severity: "info",
    cloudevent: "dev.custody.revision.reverted.v1",
};

pub(super) const ALERTED: Expected = Expected {
    action: "Alerted",
    kind: "alerted",
    alertname: "CustodyRegressionNotReverted",
    severity: "critical",
    cloudevent: "dev.custody.revision.alerted.v1",
};

/// One workload's situation, from its record to its resolution.
pub(super) struct Situation<'a> {
    pub desk: &'a Desk,
    pub alertmanager: &'a Alertmanager,
    pub inbox: &'a Inbox,
    pub app: &'static str,
    pub expected: Expected,
}

/// What was seen of a situation while it was open.
pub(super) struct Fired {
    record: String,
    from: u64,
    acted_at: Timestamp,
    dedup_key: String,
    pub samples: Value,
    pub summary: String,
}

fn timestamp(value: &Value) -> anyhow::Result<Timestamp> {
    let text = value
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("not a timestamp: {value}"))?;
    Ok(text.parse()?)
}

/// Seconds from `from` to `to`, signed.
fn between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64()
}

impl Situation<'_> {
    fn ctx(&self) -> &Ctx {
        &self.desk.ctx
    }

    fn workload(&self) -> String {
        format!("Deployment/{}", self.app)
    }

    /// Whether Alertmanager's webhook notification `body` (`status`) carries this alert.
    fn routed(&self, body: &Value, status: &str) -> bool {
        body["status"] == status
            && body["alerts"].as_array().is_some_and(|alerts| {
                alerts.iter().any(|a| {
                    a["labels"]["workload"] == self.workload().as_str()
                        && a["labels"]["alertname"] == self.expected.alertname
                })
            })
    }

    /// The record's `status.notifications` once `done` holds of them, for `STEP` at most.
    async fn deliveries(
        &self,
        record: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        let read = || async {
            let r = self.ctx().records().get(record).await?;
            anyhow::Ok(
                r.data["status"]["notifications"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        let found = wait_for(what, STEP, || async {
            let list = read().await?;
            Ok(done(&list).then_some(list))
        })
        .await;
        match found {
            Ok(list) => Ok(list),
            Err(e) => {
                let now = read().await.unwrap_or_default();
                Err(e.context(format!(
                    "record {record}'s status.notifications: {}",
                    Value::from(now)
                )))
            }
        }
    }

    /// Whether `list` has an entry of `format` for this kind with `field` set.
    fn has(&self, list: &[Value], format: &str, field: &str) -> bool {
        list.iter().any(|d| {
            d["format"] == format && d["kind"] == self.expected.kind && d[field].is_string()
        })
    }

    /// The situation's alert as Alertmanager lists it, checked, and how long after the action it
    /// was first seen there.
    async fn alert(&self, spec: &Value, acted_at: Timestamp) -> anyhow::Result<(Value, f64)> {
        let ctx = self.ctx();
        let alert = wait_for(
            &format!("{} in Alertmanager", self.expected.alertname),
            STEP,
            || async {
                Ok(self.alertmanager.alerts().await?.into_iter().find(|a| {
                    a["labels"]["alertname"] == self.expected.alertname
                        && a["labels"]["workload"] == self.workload().as_str()
                }))
            },
        )
        .await
        .map_err(|e| {
            e.context(format!(
                "Alertmanager's log: {}",
                self.alertmanager.log_tail()
            ))
        })?;
        let visible = between(acted_at, Timestamp::now());
        let labels = [
            ("severity", Some(json!(self.expected.severity))),
            ("namespace", Some(json!(ctx.ns))),
            ("team", Some(json!(self.desk.team))),
            ("reason", Some(spec["reason"].clone())),
            ("agent", spec["from"]["agent"].as_str().map(|a| json!(a))),
        ];
        let wrong: Vec<String> = labels
            .iter()
            .filter(|(k, v)| alert["labels"].get(*k) != v.as_ref())
            .map(|(k, v)| format!("{k}={} (want {})", alert["labels"][*k], json!(v)))
            .collect();
        anyhow::ensure!(wrong.is_empty(), "alert labels {wrong:?}: {alert}");
        let annotations = &alert["annotations"];
        anyhow::ensure!(
            annotations["command"]
                .as_str()
                .is_some_and(|c| c.contains("kubectl custody why"))
                && annotations["summary"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
                && annotations["description"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
            "alert annotations without summary, description or a `kubectl custody why` command: {alert}"
        );
        let starts = timestamp(&alert["startsAt"])?;
        let ends = timestamp(&alert["endsAt"])?;
        anyhow::ensure!(
            between(acted_at, starts).abs() < 1.0 && ends > Timestamp::now(),
            "the alert should start when the record was acted ({acted_at}) and end in the future: {alert}"
        );
        Ok((alert, visible))
    }

    /// The record, its alert in Alertmanager and Alertmanager's routing of it, and the trigger
    /// at every other target.
    pub async fn fired(&self) -> anyhow::Result<Fired> {
        let ctx = self.ctx();
        // The record follows the revert (or is the alert) within moments.
        let records = wait_for(
            &format!("the {} record of {}", self.expected.action, self.app),
            Duration::from_secs(10),
            || async {
                let records = ctx.records_of(self.app, self.expected.action).await?;
                Ok((!records.is_empty()).then_some(records))
            },
        )
        .await?;
        anyhow::ensure!(
            records.len() == 1,
            "expected one {} record of {}, found {records:?}",
            self.expected.action,
            self.app
        );
        let record = ctx.records().get(&records[0]).await?;
        let spec = &record.data["spec"];
        let acted_at = timestamp(&spec["actedAt"])?;
        let from: u64 = spec["from"]["revision"]
            .as_str()
            .unwrap_or_default()
            .parse()?;
        let name = records[0].clone();

        let (alert, visible) = self.alert(spec, acted_at).await?;

        let sent = self
            .deliveries(&name, "every target's notice sent", |list| {
                FORMATS.iter().all(|f| self.has(list, f, "sentAt"))
            })
            .await?;
        let failed: Vec<&Value> = sent.iter().filter(|d| d["error"].is_string()).collect();
        anyhow::ensure!(failed.is_empty(), "deliveries with errors: {failed:?}");

        let about = |b: &Value| b.to_string().contains(self.app);
        let (slack, trigger, event, routed) = wait_for(
            "the trigger at each receiver, and Alertmanager's routing of the alert",
            STEP,
            || async {
                let slack = self.inbox.at("/slack", about).pop();
                let trigger = self
                    .inbox
                    .at("/pd", |b| b["event_action"] == "trigger" && about(b))
                    .pop();
                let event = self
                    .inbox
                    .at("/ce", |b| b["type"] == self.expected.cloudevent && about(b))
                    .pop();
                let routed = self.inbox.at("/am", |b| self.routed(b, "firing")).pop();
                Ok(match (slack, trigger, event, routed) {
                    (Some(s), Some(t), Some(e), Some(r)) => Some((s, t, e, r)),
                    _ => None,
                })
            },
        )
        .await?;
        let payload = &trigger.body["payload"];
        anyhow::ensure!(
            trigger.body["routing_key"] == ROUTING_KEY
                && payload["severity"] == self.expected.severity,
            "the PagerDuty trigger should carry the Secret's routing key and severity {}: {}",
            self.expected.severity,
            trigger.body
        );
        let dedup_key = trigger.body["dedup_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        anyhow::ensure!(!dedup_key.is_empty(), "no dedup_key: {}", trigger.body);
        Ok(Fired {
            summary: format!(
                "record {name} ({}), {} in Alertmanager {visible:.1}s after it, routed to the webhook {:.1}s after it; Slack, PagerDuty and CloudEvents {:.1}/{:.1}/{:.1}s",
                spec["reason"].as_str().unwrap_or_default(),
                self.expected.alertname,
                between(acted_at, routed.at),
                between(acted_at, slack.at),
                between(acted_at, trigger.at),
                between(acted_at, event.at),
            ),
            samples: json!({
                "alertmanager_alert": alert,
                "alertmanager_webhook_firing": routed.body,
                "slack": slack.body,
                "pagerduty_trigger": trigger.body,
                "cloudevents": event.body,
            }),
            record: name,
            from,
            acted_at,
            dedup_key,
        })
    }

    /// Waits until a revision newer than the record's is marked healthy: its number and when.
    async fn newer_healthy(&self, from: u64) -> anyhow::Result<(u64, Timestamp)> {
        let sets: Api<ReplicaSet> = Api::namespaced(self.ctx().client.clone(), &self.ctx().ns);
        wait_for(
            &format!(
                "a revision of {} newer than {from} marked healthy",
                self.app
            ),
            Duration::from_secs(120),
            || async {
                let list = sets
                    .list(&ListParams::default().labels(&format!("app={}", self.app)))
                    .await?;
                Ok(list.items.into_iter().find_map(|rs| {
                    let a = rs.metadata.annotations?;
                    let revision: u64 = a.get("deployment.kubernetes.io/revision")?.parse().ok()?;
                    let since = a.get("custody.dev/healthy-since")?.parse().ok()?;
                    (revision > from).then_some((revision, since))
                }))
            },
        )
        .await
    }

    /// The resolution: Alertmanager routes it as resolved and lists the alert no more, PagerDuty
    /// gets a `resolve` of the trigger's `dedup_key`, the record says both were resolved; Slack
    /// and CloudEvents got the trigger only.
    pub async fn resolved(&self, fired: &mut Fired) -> anyhow::Result<String> {
        let (revision, healthy) = self.newer_healthy(fired.from).await?;
        // A mark older than the record is the restored revision's from before: count from the
        // revert instead.
        let since = healthy.max(fired.acted_at);
        let (routed, resolve) = wait_for(
            "the resolution in Alertmanager and PagerDuty",
            STEP,
            || async {
                let routed = self.inbox.at("/am", |b| self.routed(b, "resolved")).pop();
                let resolve = self
                    .inbox
                    .at("/pd", |b| {
                        b["event_action"] == "resolve" && b["dedup_key"] == fired.dedup_key.as_str()
                    })
                    .pop();
                Ok(routed.zip(resolve))
            },
        )
        .await?;
        let listed = self.alertmanager.alerts().await?.into_iter().any(|a| {
            a["labels"]["alertname"] == self.expected.alertname
                && a["labels"]["workload"] == self.workload().as_str()
        });
        anyhow::ensure!(!listed, "Alertmanager still lists the alert as active");
        self.deliveries(&fired.record, "the resolutions in the record", |list| {
            RESOLVING.iter().all(|f| self.has(list, f, "resolvedAt"))
        })
        .await?;
        let about = |b: &Value| b.to_string().contains(self.app);
        let counts = [
            ("Slack messages", self.inbox.at("/slack", about).len()),
            ("CloudEvents", self.inbox.at("/ce", about).len()),
            (
                "PagerDuty triggers",
                self.inbox
                    .at("/pd", |b| b["event_action"] == "trigger" && about(b))
                    .len(),
            ),
            (
                "PagerDuty resolves",
                self.inbox
                    .at("/pd", |b| {
                        b["event_action"] == "resolve" && b["dedup_key"] == fired.dedup_key.as_str()
                    })
                    .len(),
            ),
        ];
        let repeated: Vec<_> = counts.iter().filter(|(_, n)| *n != 1).collect();
        anyhow::ensure!(
            repeated.is_empty(),
            "one of each per situation expected: {repeated:?}"
        );
        fired.samples["alertmanager_webhook_resolved"] = routed.body.clone();
        fired.samples["pagerduty_resolve"] = resolve.body.clone();
        let marked = if healthy < fired.acted_at {
            format!(
                "revision {revision} kept the healthy mark it had {:.1}s before the action",
                between(healthy, fired.acted_at)
            )
        } else {
            format!(
                "revision {revision} marked healthy {:.1}s after the action",
                between(fired.acted_at, healthy)
            )
        };
        Ok(format!(
            "{marked}; resolved {:.1}s after {} in Alertmanager's webhook, {:.1}s in PagerDuty",
            between(since, routed.at),
            if healthy < fired.acted_at {
                "the action"
            } else {
                "the mark"
            },
            between(since, resolve.at),
        ))
    }
}
