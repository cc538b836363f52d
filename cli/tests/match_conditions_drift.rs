//! The chart's `matchConditions` skip the webhook for exactly the controller identities the
//! engine trusts: a list kept in two languages must not drift. `deploy/custody.yaml` is the chart
//! rendered with its defaults (CI fails when it drifts from the chart), so it is read here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use custody_engine::BUILTIN_CONTROLLERS;

#[test]
fn the_chart_skips_exactly_the_controllers_the_engine_trusts() {
    let rendered = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/custody.yaml"),
    )
    .expect("deploy/custody.yaml");
    let line = rendered
        .lines()
        .find(|l| l.trim_start().starts_with("request.userInfo.username in ["))
        .expect("the controller identities in the workloads webhook's matchConditions");
    let list = &line[line.find('[').unwrap() + 1..line.rfind(']').unwrap()];
    let mut chart: Vec<&str> = list
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    // The default policy adds no extra identities (webhook.controllerIdentities is empty).
    let mut engine: Vec<&str> = BUILTIN_CONTROLLERS.to_vec();
    chart.sort_unstable();
    engine.sort_unstable();
    assert_eq!(chart, engine);
}
