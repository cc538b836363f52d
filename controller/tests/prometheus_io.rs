//! The Prometheus provider against a real Prometheus (Debian's `prometheus`, which `.ci/tools.sh`
//! installs) scraping an exporter this test serves: the new revision's error ratio read apart
//! from the previous one's and judged against it, no data, a refused query, a query returning
//! many series. Skips loudly when no `prometheus` binary is installed. And against a stand-in
//! server that counts requests: answers reused, queries in flight bounded, a timeout kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use custody_controller::decide::analysis::{Check, check};
use custody_controller::measure::prometheus::{MetricSource, Prometheus, QueryError, Settings};
use custody_controller::measure::query::{Subject, render};
use custody_crds::analysis::{BaselineCondition, Condition, NoData};
use jiff::Timestamp;

const EXPOSITION: &str = "# TYPE app_error_ratio gauge
app_error_ratio{pod=\"web-7f9c-aaaaa\",revision=\"7f9c\"} 0.30
app_error_ratio{pod=\"web-7f9c-bbbbb\",revision=\"7f9c\"} 0.28
app_error_ratio{pod=\"web-5b1d-ccccc\",revision=\"5b1d\"} 0.005
";

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn provider(address: &str, timeout: Duration, concurrency: usize) -> Prometheus {
    Prometheus::new(Settings {
        address,
        ca_pem: None,
        headers: Vec::new(),
        timeout,
        concurrency,
    })
    .unwrap()
}

#[tokio::test]
async fn a_real_prometheus_tells_the_new_revision_from_the_previous_one() {
    let Some(binary) = custody_testkit::prometheus::binary() else {
        eprintln!(
            "SKIPPED: no prometheus binary (Debian's `prometheus` package; .ci/tools.sh installs it)"
        );
        return;
    };
    let exporter = serve(Router::new().route("/metrics", get(|| async { EXPOSITION }))).await;
    let running =
        custody_testkit::prometheus::Prometheus::start(&binary, exporter, 1, "app").unwrap();
    let address = running.url();
    let prometheus = provider(&address, Duration::from_secs(5), 4);
    let template = r#"max(app_error_ratio{pod=~"{{pods}}"})"#;
    let new_pods = vec!["web-7f9c-aaaaa".to_string(), "web-7f9c-bbbbb".to_string()];
    let old_pods = vec!["web-5b1d-ccccc".to_string()];
    let subject = |pods| Subject {
        namespace: "shop",
        name: "web",
        kind: "Deployment",
        revision: "7f9c",
        pods,
        window_seconds: 60,
    };
    let new_query = render(template, &subject(&new_pods)).unwrap();
    let old_query = render(template, &subject(&old_pods)).unwrap();

    // Wait for the first scrapes (a query before them has no data, which is the point).
    let started = Instant::now();
    let new = loop {
        match prometheus.value(&new_query, Timestamp::now()).await {
            Ok(Some(v)) => break v,
            Ok(None) | Err(QueryError::Unreachable(_)) | Err(QueryError::Refused { .. })
                if started.elapsed() < Duration::from_secs(30) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => panic!("prometheus never answered: {other:?}"),
        }
    };
    let old = prometheus
        .value(&old_query, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(new, 0.30, "the new revision's pods alone");
    assert_eq!(old, Some(0.005), "the previous revision's pod alone");
    let twice = Condition {
        baseline: Some(BaselineCondition {
            ratio_above: Some(2.0),
            difference_above: None,
        }),
        ..Condition::default()
    };
    assert!(matches!(
        check(&twice, Some(new), old, NoData::Inconclusive),
        Check::Fail(why) if why.contains("times the previous revision's")
    ));

    let nothing = render(template, &subject(&["web-0000-zzzzz".to_string()])).unwrap();
    assert_eq!(
        prometheus.value(&nothing, Timestamp::now()).await.unwrap(),
        None
    );

    match prometheus
        .value("sum(app_error_ratio", Timestamp::now())
        .await
    {
        Err(QueryError::Refused {
            status: 400,
            message,
        }) => {
            assert!(message.starts_with("bad_data"), "{message}")
        }
        other => panic!("a malformed query: {other:?}"),
    }
    assert!(matches!(
        prometheus.value("app_error_ratio", Timestamp::now()).await,
        Err(QueryError::Shape(m)) if m.contains("3 series")
    ));
}

/// A stand-in for Prometheus that answers one number after `delay`, counting requests and the
/// most in flight at once.
#[derive(Default)]
struct Counting {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    most: AtomicUsize,
    delay_ms: AtomicUsize,
}

async fn answer(State(c): State<Arc<Counting>>) -> &'static str {
    c.requests.fetch_add(1, Ordering::SeqCst);
    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    c.most.fetch_max(now, Ordering::SeqCst);
    let delay = c.delay_ms.load(Ordering::SeqCst) as u64;
    tokio::time::sleep(Duration::from_millis(delay)).await;
    c.in_flight.fetch_sub(1, Ordering::SeqCst);
    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.5"]}]}}"#
}

async fn counting() -> (Arc<Counting>, String) {
    let c = Arc::new(Counting::default());
    let addr = serve(
        Router::new()
            .route("/api/v1/query", post(answer))
            .with_state(c.clone()),
    )
    .await;
    (c, format!("http://{addr}"))
}

#[tokio::test]
async fn answers_are_reused_and_queries_in_flight_are_bounded() {
    let (c, address) = counting().await;
    let prometheus = Arc::new(provider(&address, Duration::from_secs(5), 3));
    let at = Timestamp::now();
    for _ in 0..5 {
        assert_eq!(prometheus.value("q", at).await.unwrap(), Some(0.5));
    }
    assert_eq!(
        c.requests.load(Ordering::SeqCst),
        1,
        "the same query at the same second"
    );

    c.delay_ms.store(50, Ordering::SeqCst);
    let queries: Vec<_> = (0..12)
        .map(|i| {
            let p = prometheus.clone();
            tokio::spawn(async move { p.value(&format!("q{i}"), at).await })
        })
        .collect();
    for q in queries {
        assert_eq!(q.await.unwrap().unwrap(), Some(0.5));
    }
    assert_eq!(c.requests.load(Ordering::SeqCst), 13);
    assert_eq!(
        c.most.load(Ordering::SeqCst),
        3,
        "no more than the bound at once"
    );
}

#[tokio::test]
async fn a_slow_or_absent_server_is_an_error_never_a_value() {
    let (c, address) = counting().await;
    c.delay_ms.store(2000, Ordering::SeqCst);
    let slow = provider(&address, Duration::from_millis(200), 2);
    assert!(matches!(
        slow.value("q", Timestamp::now()).await,
        Err(QueryError::Timeout(_))
    ));
    let port = free_port();
    let absent = provider(
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(2),
        2,
    );
    assert!(matches!(
        absent.value("q", Timestamp::now()).await,
        Err(QueryError::Unreachable(_))
    ));
}
