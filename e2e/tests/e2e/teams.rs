//! Teams: a reverted agent Deployment's record goes to its owning CustodyTeam's notify target,
//! with a header from a Secret in Custody's namespace, and names the team and its on-call; a
//! person's break-glass revision gets one BreakGlass Warning Event, one count and one notice.
//! The receiver is an HTTP server on 127.0.0.1 in this process, which the local controllers
//! reach (local mode only).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use custody_e2e::local::NAMESPACE as CUSTODY_NAMESPACE;
use custody_e2e::{deployment, provenance, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use crate::support::{Ctx, apply, create, secs, teams_api};

/// What the receiver got: each POST's path, headers and JSON body.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, HeaderMap, Value)>>>);

impl Received {
    fn at(&self, path: &str) -> Vec<(HeaderMap, Value)> {
        self.0
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(p, _, _)| p == path)
                    .map(|(_, h, v)| (h.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An HTTP receiver on 127.0.0.1, for as long as the scenario runs.
struct Receiver {
    base: String,
    received: Received,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        async fn record(
            Path(path): Path<String>,
            State(received): State<Received>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) {
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Ok(mut r) = received.0.lock() {
                r.push((format!("/{path}"), headers, value));
            }
        }
        let received = Received::default();
        let app = Router::new()
            .route("/{path}", post(record))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base,
            received,
            task,
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CustodyTeam for the test namespace, its one target `url` (headers from `secret`).
async fn team(ctx: &Ctx, name: &str, url: &str, secret: Option<&str>) -> anyhow::Result<()> {
    let mut target = json!({"url": url});
    if let Some(s) = secret {
        target["headersFrom"] = json!({"name": s});
    }
    let object = json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
        "metadata": {"name": name},
        "spec": {"oncall": [format!("@{name}-oncall")], "namespaces": [ctx.ns], "notify": [target]}
    });
    teams_api(ctx)
        .create(&PostParams::default(), &serde_json::from_value(object)?)
        .await?;
    Ok(())
}

/// An agent's provenance, owned by `team`, whose own on-call is the team's (the default policy
/// requires the annotation; the fallback to the team's contacts is proven in the controller's
/// tests).
fn owned(actor: &str, commit: &str, team: &str) -> Value {
    let mut a = provenance(actor, commit, &format!("run-{commit}"));
    a["custody.dev/owner"] = json!(team);
    a["custody.dev/oncall"] = json!(format!("@{team}-oncall"));
    a
}

const TEAM_22: &str = "e2e-22-team";
const SECRET_22: &str = "e2e-22-pager";
const APP_22: &str = "team-app";

pub async fn revert_notifies_team(ctx: &Ctx) -> anyhow::Result<String> {
    let receiver = Receiver::start().await?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), CUSTODY_NAMESPACE);
    let _ = secrets.delete(SECRET_22, &DeleteParams::default()).await;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": SECRET_22},
                "stringData": {"Authorization": "Bearer e2e-22-token"}
            }))?,
        )
        .await?;
    let _ = teams_api(ctx)
        .delete(TEAM_22, &DeleteParams::default())
        .await;
    team(
        ctx,
        TEAM_22,
        &format!("{}/team", receiver.base),
        Some(SECRET_22),
    )
    .await?;
    let result = async {
        create(
            &ctx.deployments(),
            &deployment(
                &ctx.settings,
                APP_22,
                owned("agent", "2222201", TEAM_22),
                "v1",
                false,
            ),
        )
        .await?;
        ctx.wait_healthy_mark(APP_22).await?;
        let applied = Instant::now();
        apply(
            &ctx.deployments(),
            &deployment(
                &ctx.settings,
                APP_22,
                owned("agent", "2222202", TEAM_22),
                "v2",
                true,
            ),
        )
        .await?;
        ctx.wait_version(APP_22, "v1", ctx.settings.revert_window)
            .await?;
        let reverted = secs(applied);
        let (headers, body) = wait_for(
            "the record at the team's target",
            Duration::from_secs(30),
            || async {
                Ok(receiver
                    .received
                    .at("/team")
                    .into_iter()
                    .find(|(_, b)| b["spec"]["workload"]["name"] == APP_22))
            },
        )
        .await?;
        anyhow::ensure!(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some("Bearer e2e-22-token"),
            "the Secret's header is missing: {headers:?}"
        );
        anyhow::ensure!(
            body["kind"] == "RollbackRecord" && body["spec"]["team"] == TEAM_22,
            "not the record of the team: {body}"
        );
        let records = ctx.records_of(APP_22, "Reverted").await?;
        anyhow::ensure!(records.len() == 1, "expected one record, found {records:?}");
        let record = wait_for(
            "status.notified on the record",
            Duration::from_secs(30),
            || async {
                let r = ctx.records().get(&records[0]).await?;
                Ok((r.data["status"]["notified"] == json!(true)).then_some(r))
            },
        )
        .await?;
        let (team, oncall) = (&record.data["spec"]["team"], &record.data["spec"]["oncall"]);
        anyhow::ensure!(
            *team == TEAM_22 && *oncall == format!("@{TEAM_22}-oncall"),
            "the record names team {team} and on-call {oncall}"
        );
        Ok(format!(
            "reverted {reverted:.1}s after v2; record {} at the team's target with its Secret's header, spec.team {team}, spec.oncall {oncall}, status.notified",
            records[0]
        ))
    }
    .await;
    let _ = teams_api(ctx)
        .delete(TEAM_22, &DeleteParams::default())
        .await;
    let _ = secrets.delete(SECRET_22, &DeleteParams::default()).await;
    result
}

const TEAM_23: &str = "e2e-23-team";
const APP_23: &str = "glass-app";
const GLASS_REASON: &str = "e2e-23: INC-2323 restoring checkout";

fn break_glass_events(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| {
            e.reason.as_deref() == Some("BreakGlass")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(APP_23)
        })
        .collect()
}

async fn break_glass_count(ctx: &Ctx) -> f64 {
    let Some(local) = ctx.local.as_ref() else {
        return 0.0;
    };
    let mut total = 0.0;
    for name in local.controller_names() {
        let metrics = local.controller_metrics(&name).await.unwrap_or_default();
        total += metrics
            .lines()
            .filter(|l| l.starts_with("custody_break_glass_total{kind=\"Deployment\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}

pub async fn break_glass_visible(ctx: &Ctx) -> anyhow::Result<String> {
    let receiver = Receiver::start().await?;
    let _ = teams_api(ctx)
        .delete(TEAM_23, &DeleteParams::default())
        .await;
    team(ctx, TEAM_23, &format!("{}/glass", receiver.base), None).await?;
    let result = async {
        let before = break_glass_count(ctx).await;
        create(
            &ctx.deployments(),
            &deployment(
                &ctx.settings,
                APP_23,
                owned("human", "2323231", TEAM_23),
                "v1",
                false,
            ),
        )
        .await?;
        ctx.wait_pods(APP_23, 2, true, Duration::from_secs(120))
            .await?;
        let mut v2 = deployment(
            &ctx.settings,
            APP_23,
            owned("human", "2323232", TEAM_23),
            "v2",
            false,
        );
        v2["metadata"]["annotations"]["custody.dev/break-glass"] = json!(GLASS_REASON);
        let applied = Instant::now();
        apply(&ctx.deployments(), &v2).await?;
        ctx.wait_event("BreakGlass", APP_23).await?;
        let seen = secs(applied);
        let notice = wait_for(
            "the break-glass notice at the team's target",
            Duration::from_secs(30),
            || async {
                Ok(receiver
                    .received
                    .at("/glass")
                    .into_iter()
                    .map(|(_, b)| b)
                    .find(|b| b["workload"]["name"] == APP_23))
            },
        )
        .await?;
        anyhow::ensure!(
            notice["kind"] == "BreakGlass"
                && notice["reason"] == GLASS_REASON
                && notice["actor"] == "human"
                && notice["team"] == TEAM_23
                && notice["revision"] == "2",
            "unexpected notice {notice}"
        );
        let rss: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ctx.ns);
        let marked = rss
            .list(&ListParams::default().labels(&format!("app={APP_23}")))
            .await?
            .items
            .iter()
            .filter(|rs| {
                rs.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key("custody.dev/break-glass-noticed"))
            })
            .count();
        anyhow::ensure!(marked == 1, "{marked} ReplicaSets marked noticed, not 1");
        // Later writes to the same revision (the controller's healthy mark) trigger more
        // reconciles: it is still announced once.
        wait_for(
            "the break-glass revision marked healthy",
            Duration::from_secs(120),
            || {
                let rss = rss.clone();
                async move {
                    Ok(rss
                        .list(&ListParams::default().labels(&format!("app={APP_23}")))
                        .await?
                        .items
                        .iter()
                        .any(|rs| {
                            rs.metadata.annotations.as_ref().is_some_and(|a| {
                                a.contains_key("custody.dev/break-glass-noticed")
                                    && a.contains_key("custody.dev/healthy-since")
                            })
                        })
                        .then_some(()))
                }
            },
        )
        .await?;
        let events: Api<Event> = Api::namespaced(ctx.client.clone(), &ctx.ns);
        let all = events.list(&ListParams::default()).await?.items;
        let glass = break_glass_events(&all);
        anyhow::ensure!(glass.len() == 1, "{} BreakGlass Events", glass.len());
        let note = glass[0].note.clone().unwrap_or_default();
        anyhow::ensure!(
            note.contains(GLASS_REASON) && note.contains("by human") && note.contains("revision 2"),
            "the Event's note: {note}"
        );
        anyhow::ensure!(
            glass[0].series.is_none(),
            "the Event was repeated: {:?}",
            glass[0].series
        );
        let notices = receiver.received.at("/glass").len();
        anyhow::ensure!(notices == 1, "{notices} notices");
        let counted = break_glass_count(ctx).await - before;
        anyhow::ensure!(counted == 1.0, "custody_break_glass_total rose by {counted}");
        Ok(format!(
            "BreakGlass Event {seen:.1}s after the human's v2, naming reason, actor and revision; one notice to the team, one count, revision marked"
        ))
    }
    .await;
    let _ = teams_api(ctx)
        .delete(TEAM_23, &DeleteParams::default())
        .await;
    result
}
