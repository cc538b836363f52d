//! Metric analysis and the guarded first step, as the decision sees them: where an analysis
//! stands after its checks, what a failed or unfinished analysis does to the decision, and when
//! an agent's rollout is held, kept held and released.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use custody_controller::act::revert;
use custody_controller::cache::observe::{Observed, WorkloadState};
use custody_controller::decide::analysis::{Check, Observation, Progress, judge, wanted};
use custody_controller::decide::assess::{Assessment, assess};
use custody_controller::decide::canary::{Guard, Step, step};
use custody_controller::decide::choose::{Declared, choose};
use custody_controller::decide::{Action, Verdict};
use custody_crds::analysis::{
    AnalysisPhase, AnalysisSpec, BaselineCondition, CheckResult, Condition, MetricSpec, NoData,
    PrometheusSpec, ProviderSpec,
};
use custody_crds::{Actor, Canary, RollbackSettings, SignalReason, Vocabulary, WorkloadKind};
use serde_json::json;

use support::{NOW, fingerprint, healthy_mark, pod, revision, rollout, t};

fn metric(name: &str, condition: Condition, dry_run: bool) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        query: r#"sum(rate(errors{pod=~"{{pods}}"}[{{window}}]))"#.into(),
        condition,
        dry_run,
    }
}

fn ratio(limit: f64) -> Condition {
    Condition {
        baseline: Some(BaselineCondition {
            ratio_above: Some(limit),
            difference_above: Some(0.02),
        }),
        ..Condition::default()
    }
}

fn spec(metrics: Vec<MetricSpec>) -> AnalysisSpec {
    AnalysisSpec {
        interval_seconds: 10,
        window_seconds: 60,
        failure_limit: 2,
        no_data: NoData::Inconclusive,
        provider: ProviderSpec {
            prometheus: PrometheusSpec {
                address: "http://prometheus:9090".into(),
                ca_from: None,
                headers_from: None,
                timeout_seconds: 5,
            },
        },
        metrics,
    }
}

fn seen(check: Check, new: Option<f64>, baseline: Option<f64>) -> Observation {
    Observation {
        check,
        new,
        baseline,
        query: "q-new".into(),
        baseline_query: Some("q-base".into()),
    }
}

fn pass() -> Observation {
    seen(Check::Pass, Some(0.004), Some(0.005))
}

fn fail() -> Observation {
    seen(
        Check::Fail("0.3 is 60 times".into()),
        Some(0.3),
        Some(0.005),
    )
}

fn gap() -> Observation {
    seen(
        Check::Inconclusive("the query failed: no answer".into()),
        None,
        None,
    )
}

/// An analysis of web-2 with one gating metric after `checks`, at t(0), t(10), ...
fn progress_after(checks: Vec<Observation>) -> Progress {
    let mut p = Progress::new("web-2", &spec(vec![metric("errors", ratio(2.0), false)]));
    for (i, c) in checks.into_iter().enumerate() {
        p.record(vec![c], t(i64::try_from(i).unwrap() * 10));
    }
    p
}

#[test]
fn an_analysis_passes_fails_or_waits_by_its_checks() {
    let cases: Vec<(&str, Vec<Observation>, AnalysisPhase)> = vec![
        ("not checked yet", vec![], AnalysisPhase::Running),
        (
            "one pass of two needed",
            vec![pass()],
            AnalysisPhase::Running,
        ),
        ("two passes", vec![pass(), pass()], AnalysisPhase::Passed),
        (
            "a failure after passes holds the pass back",
            vec![pass(), pass(), fail()],
            AnalysisPhase::Running,
        ),
        (
            "two failures in a row",
            vec![fail(), fail()],
            AnalysisPhase::Failed,
        ),
        (
            "gaps neither confirm nor break a run",
            vec![fail(), gap(), fail()],
            AnalysisPhase::Failed,
        ),
        (
            "a pass breaks the run",
            vec![fail(), pass(), fail()],
            AnalysisPhase::Running,
        ),
        (
            "the provider away",
            vec![gap(), gap(), gap()],
            AnalysisPhase::Inconclusive,
        ),
        (
            "missing data never passes a revision",
            vec![pass(), gap(), gap()],
            AnalysisPhase::Inconclusive,
        ),
        (
            "a confirmed failure stands after a pass",
            vec![fail(), fail(), pass()],
            AnalysisPhase::Failed,
        ),
    ];
    for (name, checks, phase) in cases {
        assert_eq!(progress_after(checks).phase(), phase, "{name}");
    }
}

#[test]
fn a_failed_analysis_keeps_its_evidence_for_the_record() {
    let p = progress_after(vec![pass(), fail(), gap(), fail()]);
    let (metric, at) = p.failed().unwrap();
    assert_eq!(metric.name, "errors");
    assert_eq!(at, t(30), "confirmed by the second failure");
    let report = p.report();
    assert_eq!(report.phase, AnalysisPhase::Failed);
    assert_eq!(report.checks, 4);
    let m = &report.metrics[0];
    assert_eq!(m.result, CheckResult::Fail);
    assert_eq!((m.new, m.baseline), (Some(0.3), Some(0.005)));
    assert_eq!(
        (m.query.as_str(), m.baseline_query.as_deref()),
        ("q-new", Some("q-base"))
    );
    assert_eq!(
        m.failed_checks.len(),
        2,
        "the run of failures, not the pass before it"
    );
    assert_eq!(m.failed_checks[0].at, t(10).to_string());
    assert!(
        m.condition.contains("2 times the previous revision's"),
        "{}",
        m.condition
    );
    // The report is what the revision's mark and the record carry: it round-trips as JSON.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["metrics"][0]["failingInARow"], json!(2));
    assert_eq!(json["phase"], json!("Failed"));
}

#[test]
fn an_analysis_resumes_where_its_mark_left_it() {
    let spec = spec(vec![metric("errors", ratio(2.0), false)]);
    for checks in [
        vec![],
        vec![pass()],
        vec![pass(), pass()],
        vec![fail(), gap()],
        vec![pass(), fail(), fail()],
        vec![gap(), gap()],
    ] {
        let before = progress_after(checks);
        let resumed = Progress::resume("web-2", &spec, &before.report());
        assert_eq!(resumed.report(), before.report());
        assert_eq!(resumed.phase(), before.phase());
        assert_eq!(
            resumed.failed().map(|(_, at)| at),
            before.failed().map(|(_, at)| at)
        );
    }
    // A metric the policy no longer has is dropped; a new one starts from nothing.
    let before = progress_after(vec![pass(), pass()]);
    let changed = AnalysisSpec {
        metrics: vec![metric("latency", ratio(1.5), false)],
        ..spec.clone()
    };
    let resumed = Progress::resume("web-2", &changed, &before.report());
    assert_eq!(resumed.metrics[0].standing.passed, 0);
    assert_eq!(resumed.phase(), AnalysisPhase::Running);
}

#[test]
fn a_dry_run_metric_reports_and_never_gates() {
    let spec = spec(vec![
        metric("errors", ratio(2.0), false),
        metric("latency", ratio(1.5), true),
    ]);
    let mut p = Progress::new("web-2", &spec);
    for i in 0..2 {
        p.record(vec![pass(), fail()], t(i * 10));
    }
    assert_eq!(
        p.phase(),
        AnalysisPhase::Passed,
        "the dry-run metric does not gate"
    );
    assert!(p.failed().is_none());
    let would: Vec<&str> = p.would_fail().map(|m| m.name.as_str()).collect();
    assert_eq!(would, ["latency"]);
}

#[test]
fn a_threshold_the_previous_revision_crosses_too_is_not_the_new_ones_doing() {
    let above = Condition {
        above: Some(0.05),
        ..Condition::default()
    };
    let wait = NoData::Inconclusive;
    assert!(matches!(
        judge(&above, Some(0.3), Some(0.005), true, wait),
        Check::Fail(_)
    ));
    assert!(matches!(
        judge(&above, Some(0.3), Some(0.2), true, wait),
        Check::Inconclusive(why) if why.contains("previous revision crosses it too")
    ));
    // Measured apart (the previous revision's window is before the rollout), no such excuse:
    // the trouble may well be the new revision's.
    assert!(matches!(
        judge(&above, Some(0.3), Some(0.2), false, wait),
        Check::Fail(_)
    ));
    assert!(matches!(
        judge(&above, Some(0.3), None, true, wait),
        Check::Fail(_)
    ));
}

fn analysed(actor: &str) -> Observed {
    rollout(actor, &[], vec![pod("web-2", 1, true, 900)])
}

fn with_analysis() -> RollbackSettings {
    RollbackSettings {
        analysis: Some(spec(vec![metric("errors", ratio(2.0), false)])),
        ..RollbackSettings::default()
    }
}

fn decided(observed: &Observed, progress: Option<&Progress>) -> Action {
    let settings = with_analysis();
    let vocabulary = Vocabulary::default();
    match assess(observed, &settings, &vocabulary, progress, t(NOW)) {
        Assessment::Settled(action) => action,
        Assessment::Regressed(r) => {
            choose(&r, Declared::of(r.current, &vocabulary), &settings, false)
        }
    }
}

fn verdict(action: &Action) -> &Verdict {
    match action {
        Action::Revert(v) | Action::Alert(v) => v,
        other => panic!("expected a regression, got {other:?}"),
    }
}

#[test]
fn a_failed_analysis_reverts_an_agents_revision_and_alerts_about_a_persons() {
    let failed = progress_after(vec![fail(), fail()]);
    let by_agent = decided(&analysed("agent"), Some(&failed));
    assert!(matches!(by_agent, Action::Revert(_)), "{by_agent:?}");
    let v = verdict(&by_agent);
    assert_eq!(v.reason, SignalReason::MetricAnalysis);
    assert_eq!(v.to.as_ref().map(|r| r.name.as_str()), Some("web-1"));
    let evidence = v.analysis.as_ref().unwrap();
    assert_eq!(evidence.metrics[0].failed_checks.len(), 2);
    assert!(
        v.findings
            .iter()
            .any(|f| f.reason == SignalReason::MetricAnalysis && f.confirmed_at == t(10)),
        "{:?}",
        v.findings
    );
    let by_person = decided(&analysed("human"), Some(&failed));
    assert!(matches!(by_person, Action::Alert(_)), "{by_person:?}");
    assert_eq!(verdict(&by_person).reason, SignalReason::MetricAnalysis);
}

#[test]
fn an_analysis_of_another_revision_is_no_evidence() {
    let mut stale = progress_after(vec![fail(), fail()]);
    stale.revision = "web-0".into();
    let action = decided(&analysed("agent"), Some(&stale));
    assert!(
        !matches!(action, Action::Revert(_) | Action::Alert(_)),
        "{action:?}"
    );
}

/// A complete rollout of v2 (three Pods Ready since t(0)), v1 healthy.
fn complete(actor: &str) -> Observed {
    let mut o = rollout(
        actor,
        &[],
        (1..=3).map(|i| pod("web-2", i, true, 0)).collect(),
    );
    o.workload.updated_replicas = 3;
    o.workload.available_replicas = 3;
    o.workload.total_replicas = 3;
    o.pods.retain(|p| p.revision == "web-2");
    o
}

#[test]
fn a_revision_is_marked_healthy_only_once_its_analysis_passed() {
    let o = complete("agent");
    for (name, progress) in [
        ("not started", None),
        ("running", Some(progress_after(vec![pass()]))),
        ("provider away", Some(progress_after(vec![gap(), gap()]))),
    ] {
        let action = decided(&o, progress.as_ref());
        assert!(
            matches!(&action, Action::Wait { after, why } if *after == Duration::from_secs(10) && why.contains("analysis")),
            "{name}: {action:?}"
        );
    }
    let passed = progress_after(vec![pass(), pass()]);
    assert_eq!(
        decided(&o, Some(&passed)),
        Action::MarkHealthy {
            revision: "web-2".into()
        }
    );
}

#[test]
fn only_a_revision_replacing_a_healthy_one_is_analysed() {
    let vocabulary = Vocabulary::default();
    let o = analysed("agent");
    assert_eq!(
        wanted(&o, &vocabulary).map(|r| r.name.as_str()),
        Some("web-2")
    );
    // The first revision of a workload: nothing to compare with, nothing to go back to.
    let mut first = o.clone();
    first.revisions.truncate(1);
    assert!(wanted(&first, &vocabulary).is_none());
    // No Pod yet: nothing to measure.
    let mut podless = o.clone();
    podless.pods.retain(|p| p.revision != "web-2");
    assert!(wanted(&podless, &vocabulary).is_none());
    // Judged already.
    let mut healthy = o.clone();
    healthy.revisions[0] = revision(2, "web:2", "agent", &[healthy_mark()]);
    assert!(wanted(&healthy, &vocabulary).is_none());
    // And the first revision is marked healthy by its probes alone.
    let mut c = complete("agent");
    c.revisions.truncate(1);
    assert_eq!(
        decided(&c, None),
        Action::MarkHealthy {
            revision: "web-2".into()
        }
    );
}

const HELD: &str = "custody.dev/held";

fn canary() -> Canary {
    Canary { hold_seconds: 60 }
}

fn guarded(o: &Observed, actor: Actor, progress: Option<&Progress>, at: i64) -> Option<Step> {
    let canary = canary();
    let analysis = spec(vec![metric("errors", ratio(2.0), false)]);
    step(
        o,
        Guard {
            canary: Some(&canary),
            analysis: Some(&analysis),
            progress,
            dry_run: false,
        },
        Some(actor),
        &Vocabulary::default(),
        t(at),
    )
}

/// v2's first step: one new Pod, Ready since t(100), beside v1's three.
fn first_step() -> Observed {
    rollout("agent", &[], vec![pod("web-2", 1, true, 100)])
}

fn held(mut o: Observed) -> Observed {
    o.workload.paused = true;
    o.workload.annotations.insert(HELD.into(), "web-2".into());
    o
}

#[test]
fn an_agents_first_step_is_held() {
    let o = first_step();
    assert_eq!(
        guarded(&o, Actor::Agent, None, 101),
        Some(Step::Hold {
            revision: "web-2".into(),
            number: 2,
            partition: 2
        })
    );
    assert_eq!(
        guarded(&o, Actor::Human, None, 101),
        None,
        "a person's rollout"
    );
    // The new ReplicaSet is seen before the Deployment's status moves on from the previous,
    // complete rollout: the Pods, not the status, say where the rollout is.
    let mut stale = rollout("agent", &[], vec![]);
    stale.workload.updated_replicas = 3;
    stale.workload.total_replicas = 3;
    assert!(matches!(
        guarded(&stale, Actor::Agent, None, 101),
        Some(Step::Hold { .. })
    ));
    let mut done = rollout(
        "agent",
        &[],
        (1..=3).map(|i| pod("web-2", i, true, 100)).collect(),
    );
    done.pods.retain(|p| p.revision == "web-2");
    assert_eq!(
        guarded(&done, Actor::Agent, None, 101),
        None,
        "past its first step"
    );
    let mut paused = o.clone();
    paused.workload.paused = true;
    assert_eq!(
        guarded(&paused, Actor::Agent, None, 101),
        None,
        "a Deployment a person paused is theirs"
    );
    let mut one = o.clone();
    one.workload.replicas = 1;
    assert_eq!(
        guarded(&one, Actor::Agent, None, 101),
        None,
        "one replica: no first step"
    );
    let mut first = o.clone();
    first.revisions.truncate(1);
    assert_eq!(
        guarded(&first, Actor::Agent, None, 101),
        None,
        "nothing healthy to replace"
    );
    let mut released = o.clone();
    released
        .workload
        .annotations
        .insert("custody.dev/released".into(), "web-2".into());
    assert_eq!(
        guarded(&released, Actor::Agent, None, 101),
        None,
        "released once"
    );
    let mut daemons = o.clone();
    daemons.workload.kind = WorkloadKind::DaemonSet;
    assert_eq!(guarded(&daemons, Actor::Agent, None, 101), None);
    let none = step(
        &o,
        Guard {
            canary: None,
            analysis: None,
            progress: None,
            dry_run: false,
        },
        Some(Actor::Agent),
        &Vocabulary::default(),
        t(101),
    );
    assert_eq!(none, None, "no canary in the policy");
}

#[test]
fn dry_run_holds_nothing_new() {
    let o = first_step();
    let canary = canary();
    let guard = |dry_run| Guard {
        canary: Some(&canary),
        analysis: None,
        progress: None,
        dry_run,
    };
    let at = |g| step(&o, g, Some(Actor::Agent), &Vocabulary::default(), t(101));
    assert!(matches!(at(guard(false)), Some(Step::Hold { .. })));
    assert_eq!(at(guard(true)), None);
    // A hold from before dry run was turned on still ends as holds do.
    let held = held(first_step());
    let released = step(
        &held,
        guard(true),
        Some(Actor::Agent),
        &Vocabulary::default(),
        t(200),
    );
    assert!(
        matches!(released, Some(Step::Release { .. })),
        "{released:?}"
    );
}

#[test]
fn a_regression_reported_while_held_stays_held_for_a_person() {
    let mut o = held(first_step());
    o.revisions[0] = revision(2, "web:2", "agent", &[("custody.dev/alerted-by", "web-r2")]);
    let passed = progress_after(vec![pass(), pass()]);
    assert!(matches!(
        guarded(&o, Actor::Agent, Some(&passed), 500),
        Some(Step::Holding { why, .. }) if why.contains("a person resumes it")
    ));
}

#[test]
fn a_held_step_is_released_after_its_hold_and_a_passed_analysis() {
    let o = held(first_step());
    let passed = progress_after(vec![pass(), pass()]);
    let running = progress_after(vec![pass()]);
    let away = progress_after(vec![gap(), gap()]);
    let holding = |s: Option<Step>| matches!(s, Some(Step::Holding { .. }));
    assert!(
        holding(guarded(&o, Actor::Agent, Some(&passed), 150)),
        "within the hold"
    );
    assert!(
        holding(guarded(&o, Actor::Agent, Some(&running), 200)),
        "analysis running"
    );
    assert!(
        holding(guarded(&o, Actor::Agent, Some(&away), 200)),
        "never released on missing data"
    );
    assert!(
        holding(guarded(&o, Actor::Agent, None, 200)),
        "analysis not started"
    );
    assert!(matches!(
        guarded(&o, Actor::Agent, Some(&passed), 200),
        Some(Step::Release { revision, .. }) if revision == "web-2"
    ));
    let mut unready = o.clone();
    unready.pods.last_mut().unwrap().ready = false;
    assert!(holding(guarded(&unready, Actor::Agent, Some(&passed), 200)));
    // The hold time counts from when the last first-step Pod became Ready.
    match guarded(&o, Actor::Agent, Some(&passed), 130) {
        Some(Step::Holding { after, .. }) => assert_eq!(after, Duration::from_secs(30)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hold_on_a_revision_no_longer_the_workloads_is_released() {
    // A person applied v3 while v2 was held: a paused Deployment would never roll it out.
    let mut o = held(first_step());
    o.workload.template_fingerprint = fingerprint("web:3");
    assert!(matches!(
        guarded(&o, Actor::Human, None, 200),
        Some(Step::Release { revision, .. }) if revision == "web-2"
    ));
    // v3 is an agent's at its own first step: the hold moves to it.
    let mut v3 = held(rollout("agent", &[], vec![pod("web-3", 1, true, 100)]));
    v3.revisions.insert(0, revision(3, "web:3", "agent", &[]));
    v3.workload.template_fingerprint = fingerprint("web:3");
    assert!(matches!(
        guarded(&v3, Actor::Agent, None, 200),
        Some(Step::Hold { revision, .. }) if revision == "web-3"
    ));
}

fn stateful_set(o: &mut WorkloadState) {
    o.kind = WorkloadKind::StatefulSet;
}

#[test]
fn a_revert_lifts_the_hold_in_the_same_guarded_patch() {
    let vocabulary = Vocabulary::default();
    let o = held(first_step());
    let failed = progress_after(vec![fail(), fail()]);
    let action = decided(&o, Some(&failed));
    let v = verdict(&action).clone();
    let to = v.to.clone().unwrap();
    let patch = revert::patch(
        &o.workload,
        json!({"spec": {}}),
        &to,
        None,
        &v,
        "web-r2",
        &vocabulary,
    );
    let ops = patch.as_array().unwrap();
    assert_eq!(
        ops[0]["op"], "test",
        "conditioned on the version decided on"
    );
    assert!(ops.contains(&json!({"op": "add", "path": "/spec/paused", "value": false})));
    assert!(
        ops.contains(&json!({"op": "remove", "path": "/metadata/annotations/custody.dev~1held"}))
    );

    let mut sts = o.clone();
    stateful_set(&mut sts.workload);
    sts.workload.paused = false;
    sts.workload
        .annotations
        .insert("custody.dev/held-partition".into(), "1".into());
    let patch = revert::patch(&sts.workload, json!({}), &to, None, &v, "r", &vocabulary);
    let ops = patch.as_array().unwrap();
    assert!(ops.contains(
        &json!({"op": "add", "path": "/spec/updateStrategy/rollingUpdate/partition", "value": 1})
    ));
    assert!(!ops.iter().any(|op| op["path"] == "/spec/paused"));

    // Not held: the revert patch is as before.
    let plain = first_step();
    let patch = revert::patch(&plain.workload, json!({}), &to, None, &v, "r", &vocabulary);
    assert!(
        !patch
            .as_array()
            .unwrap()
            .iter()
            .any(|op| op["path"] == "/spec/paused")
    );
}

#[test]
fn a_paused_deployment_is_judged_only_when_custody_holds_it() {
    let failed = progress_after(vec![fail(), fail()]);
    let mut paused = first_step();
    paused.workload.paused = true;
    assert!(matches!(
        decided(&paused, Some(&failed)),
        Action::Nothing { .. }
    ));
    let held = held(first_step());
    assert!(matches!(decided(&held, Some(&failed)), Action::Revert(_)));
}
