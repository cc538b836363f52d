//! Metric analysis against a real Prometheus, and the guarded first step of agents' rollouts
//! (issue 21). Each scenario runs in a namespace of its own under a policy of its own whose one
//! metric is the revision's share of failed requests against the previous revision's, measured
//! from the suite's exporter (a revision is made bad by its pod template's
//! `e2e.custody.dev/error-ratio`: Ready, yet failing 30% of its requests against a 0.5%
//! baseline).
//!
//! 36: an agent's bad revision is reverted, the record naming the metric. 37: a person's is
//! alerted. 38: Prometheus stopped mid-rollout: inconclusive, nothing reverted, no healthy mark
//! until it is back. 39-41: agents' rollouts held after the first Pod (a Deployment paused, a
//! StatefulSet's partition), released when good, reverted with one Pod on the new revision when
//! bad.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::rollout::{Clock, Observation, Revision, Rollout, check_metric_record};
use crate::scene::{HOLD_SECONDS, Kind, Rig, Scene};
use crate::support::Ctx;
use crate::timeline::Timeline;

/// The scenarios, as the suite names them.
pub const NAMES: [&str; 6] = [
    "36 metric analysis: an agent's Deployment revision that stays Ready but fails 30% of requests (0.5% before) is reverted; the record names the metric",
    "37 metric analysis: the same revision from a person is alerted, not reverted",
    "38 metric analysis: Prometheus stopped mid-rollout: inconclusive, nothing reverted, no healthy mark until it is back",
    "39 canary: an agent's good rollout is held after its first Pod (paused), resumed by the controller and completed",
    "40 canary: an agent's bad rollout is reverted with only its first Pod ever on the new revision, and unpaused",
    "41 canary: an agent's bad StatefulSet revision is held by its partition at the last ordinal, reverted, the partition restored",
];

const BAD: &str = "0.3";
const GOOD: &str = "0.005";

fn window(ctx: &Ctx) -> Duration {
    ctx.settings.revert_window + Duration::from_secs(60)
}

/// Runs `body` in `scene`; a failure carries what the cluster shows.
async fn explained(
    ctx: &Ctx,
    scene: &Scene<'_>,
    kind: Kind,
    app: &str,
    body: impl std::future::Future<Output = anyhow::Result<String>>,
) -> anyhow::Result<String> {
    match body.await {
        Ok(detail) => Ok(detail),
        Err(e) => Err(anyhow::anyhow!(
            "{e:#}{}",
            scene.evidence(kind, app, ctx.local.as_ref()).await
        )),
    }
}

fn rig(rig: &anyhow::Result<Rig>) -> anyhow::Result<&Rig> {
    rig.as_ref()
        .map_err(|e| anyhow::anyhow!("the Prometheus rig did not start: {e:#}"))
}

/// 36: an agent's revision that stays Ready but fails 30% of its requests is reverted.
pub async fn agent_reverted(ctx: &Ctx, rig_: &anyhow::Result<Rig>) -> anyhow::Result<String> {
    let scene = Scene::open(ctx, rig(rig_)?, 36, false).await?;
    let (kind, app) = (Kind::Deployment, "metric-app");
    explained(ctx, &scene, kind, app, async {
        let setup = Clock::start();
        let (r, baseline) = scene.v1(kind, app, "agent", 2, &setup).await?;
        scene
            .apply(
                kind,
                &scene.workload(kind, app, "agent", "v2", Some(BAD), 2),
            )
            .await?;
        let clock = Clock::start();
        let seen = scene
            .follow(&r, &clock, "the revert to v1", window(ctx), |o| {
                Ok(o.version() == "v1")
            })
            .await?;
        let new = seen
            .new
            .ok_or_else(|| anyhow::anyhow!("no new revision was seen"))?;
        let record = scene
            .wait_record(app, "Reverted", Duration::from_secs(30))
            .await?;
        clock.mark("record read");
        let summary = check_metric_record(&record, "Reverted", &new, &r.v1)?;
        Ok(format!(
            "v1: {}; {baseline}. From v2: {}. {summary}",
            setup.describe(),
            clock.describe()
        ))
    })
    .await
}

/// 37: the same revision from a person is alerted, and the person's template stays.
pub async fn human_alerted(ctx: &Ctx, rig_: &anyhow::Result<Rig>) -> anyhow::Result<String> {
    let scene = Scene::open(ctx, rig(rig_)?, 37, false).await?;
    let (kind, app) = (Kind::Deployment, "metric-human-app");
    explained(ctx, &scene, kind, app, async {
        let setup = Clock::start();
        let (r, baseline) = scene.v1(kind, app, "human", 2, &setup).await?;
        scene
            .apply(
                kind,
                &scene.workload(kind, app, "human", "v2", Some(BAD), 2),
            )
            .await?;
        let clock = Clock::start();
        scene
            .follow(&r, &clock, "v2's analysis failed", window(ctx), |o| {
                anyhow::ensure!(o.version() == "v2", "the person's v2 was changed");
                Ok(o.new.as_ref().is_some_and(|n| n.analysis_shows("Failed")))
            })
            .await?;
        let record = scene
            .wait_record(app, "Alerted", Duration::from_secs(30))
            .await?;
        let alerted = clock.mark("Alerted record");
        // Long enough after the alert for a wrong revert to show.
        let seen = scene
            .follow(
                &r,
                &clock,
                "10 s after the alert",
                Duration::from_secs(20),
                |o| {
                    anyhow::ensure!(o.version() == "v2", "the person's v2 was changed");
                    Ok(clock.elapsed().as_secs_f64() > alerted + 10.0)
                },
            )
            .await?;
        let new = seen
            .new
            .ok_or_else(|| anyhow::anyhow!("no new revision was seen"))?;
        let summary = check_metric_record(&record, "Alerted", &new, &r.v1)?;
        let reverted: Vec<_> = scene
            .records(app)
            .await?
            .into_iter()
            .filter(|r| r.data["spec"]["action"] == "Reverted")
            .collect();
        anyhow::ensure!(
            reverted.is_empty(),
            "a person's revision has a Reverted record"
        );
        Ok(format!(
            "v1: {}; {baseline}. From v2: {}; v2 still in place 10s after the alert. {summary}",
            setup.describe(),
            clock.describe()
        ))
    })
    .await
}

/// 38: a good revision whose analysis loses Prometheus right after the rollout starts: an
/// inconclusive analysis, nothing reverted, no healthy mark while Prometheus is away; once it
/// is back, the analysis resumes and the revision is marked healthy.
pub async fn prometheus_away(ctx: &Ctx, rig_: &anyhow::Result<Rig>) -> anyhow::Result<String> {
    let rig = rig(rig_)?;
    let result = async {
        let scene = Scene::open(ctx, rig, 38, false).await?;
        let (kind, app) = (Kind::Deployment, "metric-outage-app");
        explained(ctx, &scene, kind, app, async {
            let setup = Clock::start();
            let (r, baseline) = scene.v1(kind, app, "agent", 2, &setup).await?;
            scene
                .apply(kind, &scene.workload(kind, app, "agent", "v2", Some(GOOD), 2))
                .await?;
            let clock = Clock::start();
            rig.prometheus.stop()?;
            clock.mark("Prometheus stopped");
            let away = Duration::from_secs(20);
            scene
                .follow(&r, &clock,
                    "an inconclusive analysis while Prometheus is away, and no healthy mark for 20 s",
                    Duration::from_secs(90),
                    |o| {
                        anyhow::ensure!(o.version() == "v2", "v2 was reverted while Prometheus was away");
                        let Some(new) = &o.new else { return Ok(false) };
                        anyhow::ensure!(!new.healthy(), "v2 was marked healthy while Prometheus was away");
                        anyhow::ensure!(
                            !new.analysis_shows("Failed"),
                            "v2's analysis failed while Prometheus was away"
                        );
                        if new.analysis_shows("Inconclusive") {
                            clock.mark("Inconclusive seen");
                        }
                        Ok(clock.at("Inconclusive seen").is_some() && clock.elapsed() >= away)
                    },
                )
                .await?;
            anyhow::ensure!(
                scene.records(app).await?.is_empty(),
                "a record of the good v2 while Prometheus was away"
            );
            rig.prometheus.start().await?;
            clock.mark("Prometheus ready again");
            let seen = scene
                .follow(&r, &clock, "v2 marked healthy after Prometheus is back", Duration::from_secs(120), |o| {
                    anyhow::ensure!(o.version() == "v2", "v2 was reverted");
                    Ok(o.new.as_ref().is_some_and(Revision::healthy))
                })
                .await?;
            anyhow::ensure!(scene.records(app).await?.is_empty(), "a record of the good v2");
            let phase = seen
                .new
                .as_ref()
                .and_then(Revision::analysis)
                .map(|a| a["phase"].to_string())
                .unwrap_or_default();
            Ok(format!(
                "v1: {}; {baseline}. From v2: {}; no record; v2's analysis at the end: {phase}",
                setup.describe(),
                clock.describe()
            ))
        })
        .await
    }
    .await;
    // Whatever happened, the next scenarios have their Prometheus.
    if !rig.prometheus.running() {
        rig.prometheus.start().await?;
    }
    result
}

/// Watches the rollout of `app` from before v2 is applied.
async fn timeline(scene: &Scene<'_>, r: &Rollout) -> anyhow::Result<Timeline> {
    let pods: Api<Pod> = scene.ctx.pods();
    Timeline::start(pods, scene.workload_api(r.kind), r.app, &r.v1.hash).await
}

fn held_by(o: &Observation) -> Option<String> {
    o.annotation("custody.dev/held").map(String::from)
}

/// 39: an agent's good rollout of 3 replicas is held after its first Pod, then resumed by the
/// controller and completed.
pub async fn canary_released(ctx: &Ctx, rig_: &anyhow::Result<Rig>) -> anyhow::Result<String> {
    let scene = Scene::open(ctx, rig(rig_)?, 39, true).await?;
    let (kind, app) = (Kind::Deployment, "canary-app");
    explained(ctx, &scene, kind, app, async {
        let setup = Clock::start();
        let (r, baseline) = scene.v1(kind, app, "agent", 3, &setup).await?;
        let watched = timeline(&scene, &r).await?;
        scene
            .apply(kind, &scene.workload(kind, app, "agent", "v2", Some(GOOD), 3))
            .await?;
        let clock = Clock::start();
        let held = scene
            .follow(&r, &clock, "the rollout held after its first Pod", Duration::from_secs(45), |o| {
                Ok(o.paused() && o.new_name().is_some() && held_by(o).as_deref() == o.new_name())
            })
            .await?;
        let held_at = clock.mark("held (paused)");
        let name = held.new_name().unwrap_or_default().to_string();
        scene
            .follow(&r, &clock, "the rollout released", Duration::from_secs(HOLD_SECONDS + 90), |o| {
                Ok(!o.paused() && held_by(o).is_none() && o.annotation("custody.dev/released") == Some(&name))
            })
            .await?;
        let released_at = clock.mark("released");
        scene
            .follow(&r, &clock, "3 Pods of the new revision, marked healthy", Duration::from_secs(120), |o| {
                Ok(o.new_ready >= 3 && o.new.as_ref().is_some_and(Revision::healthy))
            })
            .await?;
        let seen = watched.seen();
        anyhow::ensure!(
            seen.most_new_while_held == 1,
            "{} Pods of the new revision at once while held (expected exactly 1): {}",
            seen.most_new_while_held,
            seen.describe()
        );
        let held_for = released_at - held_at;
        anyhow::ensure!(
            held_for >= (HOLD_SECONDS - 5) as f64,
            "held {held_for:.1}s, less than holdSeconds {HOLD_SECONDS}: {}",
            seen.describe()
        );
        scene.ctx.wait_event("RolloutHeld", app).await?;
        scene.ctx.wait_event("RolloutResumed", app).await?;
        anyhow::ensure!(scene.records(app).await?.is_empty(), "a record of the good v2");
        Ok(format!(
            "v1: {}; {baseline}. From v2: {}; held {held_for:.1}s with 1 Pod of {name}; RolloutHeld and RolloutResumed Events; no record",
            setup.describe(),
            clock.describe()
        ))
    })
    .await
}

/// 40: an agent's bad rollout of 3 replicas is reverted while only its first Pod ever ran the
/// new revision, and left unpaused.
pub async fn canary_reverted(ctx: &Ctx, rig_: &anyhow::Result<Rig>) -> anyhow::Result<String> {
    let scene = Scene::open(ctx, rig(rig_)?, 40, true).await?;
    let (kind, app) = (Kind::Deployment, "canary-bad-app");
    explained(ctx, &scene, kind, app, async {
        let setup = Clock::start();
        let (r, baseline) = scene.v1(kind, app, "agent", 3, &setup).await?;
        let watched = timeline(&scene, &r).await?;
        scene
            .apply(
                kind,
                &scene.workload(kind, app, "agent", "v2", Some(BAD), 3),
            )
            .await?;
        let clock = Clock::start();
        let seen = scene
            .follow(&r, &clock, "the revert to v1", window(ctx), |o| {
                if o.paused() && held_by(o).is_some() {
                    clock.mark("held (paused)");
                }
                Ok(o.version() == "v1")
            })
            .await?;
        let new = seen
            .new
            .ok_or_else(|| anyhow::anyhow!("no new revision was seen"))?;
        scene
            .follow(
                &r,
                &clock,
                "v1 unpaused with 3 Ready Pods",
                Duration::from_secs(60),
                |o| Ok(!o.paused() && o.v1_ready >= 3),
            )
            .await?;
        clock.mark("unpaused, 3 v1 Pods Ready");
        let record = scene
            .wait_record(app, "Reverted", Duration::from_secs(30))
            .await?;
        let summary = check_metric_record(&record, "Reverted", &new, &r.v1)?;
        let timeline = watched.seen();
        let ran = timeline.new_revision_pods(&r.v1.hash);
        anyhow::ensure!(
            ran.len() == 1,
            "{} Pods ran the new revision (expected only the first): {}",
            ran.len(),
            timeline.describe()
        );
        anyhow::ensure!(
            timeline
                .first(|h| h.paused && h.held.as_deref() == Some(&new.name))
                .is_some(),
            "the rollout was never seen held on {}: {}",
            new.name,
            timeline.describe()
        );
        Ok(format!(
            "v1: {}; {baseline}. From v2: {}; the only Pod ever on {}: {ran:?}. {summary}",
            setup.describe(),
            clock.describe(),
            new.name
        ))
    })
    .await
}

/// 41: an agent's bad StatefulSet revision is held by its partition at the last ordinal (only
/// ordinal 2 ever runs it), reverted, and its partition restored.
pub async fn stateful_set_partition(
    ctx: &Ctx,
    rig_: &anyhow::Result<Rig>,
) -> anyhow::Result<String> {
    let scene = Scene::open(ctx, rig(rig_)?, 41, true).await?;
    let (kind, app) = (Kind::StatefulSet, "canary-db");
    explained(ctx, &scene, kind, app, async {
        let setup = Clock::start();
        let (r, baseline) = scene.v1(kind, app, "agent", 3, &setup).await?;
        let watched = timeline(&scene, &r).await?;
        scene
            .apply(
                kind,
                &scene.workload(kind, app, "agent", "v2", Some(BAD), 3),
            )
            .await?;
        let clock = Clock::start();
        let seen = scene
            .follow(&r, &clock, "the revert to v1", window(ctx), |o| {
                if o.partition() == Some(2)
                    && o.new_name().is_some()
                    && held_by(o).as_deref() == o.new_name()
                {
                    clock.mark("held (partition 2)");
                }
                Ok(o.version() == "v1")
            })
            .await?;
        let new = seen
            .new
            .ok_or_else(|| anyhow::anyhow!("no new revision was seen"))?;
        scene
            .follow(
                &r,
                &clock,
                "the partition restored and 3 v1 Pods Ready",
                Duration::from_secs(90),
                |o| Ok(o.partition().unwrap_or(0) == 0 && held_by(o).is_none() && o.v1_ready >= 3),
            )
            .await?;
        clock.mark("partition restored, 3 v1 Pods Ready");
        let record = scene
            .wait_record(app, "Reverted", Duration::from_secs(30))
            .await?;
        let summary = check_metric_record(&record, "Reverted", &new, &r.v1)?;
        let timeline = watched.seen();
        anyhow::ensure!(
            timeline
                .first(|h| h.partition == Some(2)
                    && h.held.as_deref() == Some(&new.name)
                    && h.held_partition.as_deref() == Some("0"))
                .is_some(),
            "the StatefulSet was never seen held at partition 2 on {}, keeping its partition 0 in custody.dev/held-partition: {}",
            new.name,
            timeline.describe()
        );
        let on = |ordinal: u32| {
            timeline
                .pods
                .get(&format!("{app}-{ordinal}"))
                .cloned()
                .unwrap_or_default()
        };
        let v1_only = BTreeSet::from([r.v1.hash.clone()]);
        anyhow::ensure!(
            on(0) == v1_only && on(1) == v1_only && on(2).contains(&new.hash),
            "ordinals 0 and 1 must only ever run {}, ordinal 2 {} too: {}",
            r.v1.hash,
            new.hash,
            timeline.describe()
        );
        anyhow::ensure!(
            timeline.new_revision_pods(&r.v1.hash).len() == 1,
            "Pods other than ordinal 2 ran the new revision: {}",
            timeline.describe()
        );
        Ok(format!(
            "v1: {}; {baseline}. From v2: {}; only {app}-2 ever ran {}. {summary}",
            setup.describe(),
            clock.describe(),
            new.name
        ))
    })
    .await
}
