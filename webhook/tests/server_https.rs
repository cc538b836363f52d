//! The webhook over real HTTPS on loopback: captured AdmissionReviews in, whole responses
//! checked; bad bodies; certificate rotation by symlink swap under load; HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::time::Duration;

use custody_crds::{CustodyPolicy, CustodyPolicySpec, EnforcementMode};
use custody_engine::{PolicySet, QuarantineIndex};
use custody_webhook::server::LiveState;
use serde_json::{Value, json};
use server_support::*;

fn builtin(metrics: custody_webhook::server::Metrics) -> std::sync::Arc<LiveState> {
    LiveState::fixed(
        PolicySet::builtin_default(),
        QuarantineIndex::default(),
        metrics,
    )
}

#[tokio::test]
async fn captured_requests_get_complete_responses() {
    let pki = Pki::new("custody test CA");
    let (cert, key) = pki.issue("webhook-a");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), builtin).await;
    let ca = pki.ca_der();
    // (fixture, allowed, status code, text the message must contain)
    let cases: &[(&str, bool, Option<u16>, &str)] = &[
        ("deployment-create-agent-annotated.json", true, None, ""),
        (
            "deployment-create-unannotated.json",
            false,
            Some(403),
            "custody.dev/source-commit is missing",
        ),
        (
            "deployment-update-image-changed-provenance-unchanged.json",
            false,
            Some(403),
            "the pod template changed",
        ),
        ("deployment-scale-subresource.json", true, None, ""),
        ("deployment-delete.json", true, None, ""),
        ("pod-create-by-replicaset-controller.json", true, None, ""),
        (
            "statefulset-create-human-missing-provenance.json",
            false,
            Some(403),
            "custody.dev/source-repo is missing",
        ),
    ];
    let mut conn = Conn::open(server.addr, &ca).await;
    assert_eq!(conn.peer_cn, "webhook-a");
    for (name, allowed, code, message) in cases {
        let body = fixture(name);
        let uid = serde_json::from_slice::<Value>(&body).unwrap()["request"]["uid"].clone();
        let (status, text) = conn.post("/validate", body).await;
        assert_eq!(status, 200, "{name}: {text}");
        let review: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{name}");
        assert_eq!(review["kind"], "AdmissionReview", "{name}");
        assert_eq!(review["response"]["uid"], uid, "{name}");
        assert_eq!(review["response"]["allowed"], *allowed, "{name}: {text}");
        match code {
            Some(code) => {
                assert_eq!(review["response"]["status"]["code"], *code, "{name}");
                assert_eq!(review["response"]["status"]["status"], "Failure", "{name}");
                let msg = review["response"]["status"]["message"].as_str().unwrap();
                assert!(msg.contains(message), "{name}: {msg}");
                assert!(
                    review["response"]["status"]["details"]["causes"]
                        .as_array()
                        .is_some_and(|c| !c.is_empty())
                );
            }
            None => assert!(review["response"].get("status").is_none(), "{name}: {text}"),
        }
    }
    let metrics = {
        let registry = server.registry.lock().unwrap();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    assert!(metrics.contains(r#"custody_admission_requests_total{kind="Deployment",operation="CREATE",decision="denied",mode="Enforce"} 1"#), "{metrics}");
    // The denied request's missing keys are counted by code, for the dashboard's "denials by code".
    let missing = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                r#"custody_admission_violations_total{code="MissingAnnotation",mode="Enforce"} "#,
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(missing.is_some_and(|n| n > 0), "{metrics}");
    assert!(
        metrics.contains("custody_certificate_expiry_seconds"),
        "{metrics}"
    );
    server.shutdown.cancel();
    server.done.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_bodies_get_clear_errors() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let mut cfg = config(&secret);
    cfg.max_body_bytes = 64 * 1024;
    let server = start(cfg, builtin).await;
    let ca = pki.ca_der();

    let (status, text) = post_once(server.addr, &ca, "/validate", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(text.contains("not a valid AdmissionReview"), "{text}");

    let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}});
    let (status, text) = post_once(
        server.addr,
        &ca,
        "/validate",
        v1beta1.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("admissionReviewVersions: [v1]"), "{text}");

    let mut big: Value =
        serde_json::from_slice(&fixture("deployment-create-agent-annotated.json")).unwrap();
    big["request"]["object"]["metadata"]["annotations"]["filler"] = json!("x".repeat(100 * 1024));
    let (status, text) =
        post_once(server.addr, &ca, "/validate", big.to_string().into_bytes()).await;
    assert_eq!(status, 413);
    assert!(
        text.contains("larger than the webhook accepts (65536 bytes"),
        "{text}"
    );

    let unknown = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u-1", "kind": {"group": "example.com", "version": "v1", "kind": "Widget"},
            "operation": "CREATE", "namespace": "shop", "userInfo": {"username": "jane"},
            "object": {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}}
    });
    let (status, text) = post_once(
        server.addr,
        &ca,
        "/validate",
        unknown.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(review["response"]["uid"], "u-1");
    assert!(
        review["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Widget.example.com is not a workload kind"),
        "{text}"
    );
}

#[tokio::test]
async fn policy_endpoint_refuses_bad_policies() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), builtin).await;
    let review = |object: Value| {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "p-1", "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": "CustodyPolicy"},
                "operation": "CREATE", "name": object["metadata"]["name"], "userInfo": {"username": "jane"}, "object": object}
        })
        .to_string()
        .into_bytes()
    };
    let good = json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy", "metadata": {"name": "ok"}, "spec": {}});
    let bad = json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy", "metadata": {"name": "bad"},
        "spec": {"annotations": [{"key": "owner", "pattern": "(["}]}});
    let (_, text) = post_once(server.addr, &pki.ca_der(), "/validate-policy", review(good)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["response"]["allowed"],
        true,
        "{text}"
    );
    let (_, text) = post_once(server.addr, &pki.ca_der(), "/validate-policy", review(bad)).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 422);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid regular expression")
    );
}

#[tokio::test]
async fn certificate_rotates_by_symlink_swap_without_failing_requests() {
    let pki = Pki::new("ca");
    let (cert_a, key_a) = pki.issue("webhook-a");
    let mut secret = SecretDir::new(&cert_a, &key_a);
    let server = start(config(&secret), builtin).await;
    let ca = pki.ca_der();
    let addr = server.addr;

    // A keep-alive connection that keeps sending requests across the rotation.
    let mut steady = Conn::open(addr, &ca).await;
    assert_eq!(steady.peer_cn, "webhook-a");
    let stop = tokio_util::sync::CancellationToken::new();
    let stop_load = stop.clone();
    let load = tokio::spawn(async move {
        let mut answered = 0u32;
        while !stop_load.is_cancelled() {
            let (status, _) = steady
                .post(
                    "/validate",
                    fixture("deployment-create-agent-annotated.json"),
                )
                .await;
            assert_eq!(status, 200, "a request in flight during rotation failed");
            answered += 1;
        }
        answered
    });

    let (cert_b, key_b) = pki.issue("webhook-b");
    secret.swap(&cert_b, &key_b);
    let rotated = eventually(Duration::from_secs(10), || async {
        Conn::open(addr, &ca).await.peer_cn == "webhook-b"
    })
    .await;
    assert!(rotated, "new connections never saw the rotated certificate");

    // A mismatched pair (key of another certificate) is refused; the current one stays.
    let (_, key_c) = pki.issue("webhook-c");
    let (cert_d, _) = pki.issue("webhook-d");
    secret.swap(&cert_d, &key_c);
    let errors_seen = eventually(Duration::from_secs(10), || async {
        server.metrics.certificate_reload_errors.get() > 0
    })
    .await;
    assert!(errors_seen, "the mismatched pair was not rejected");
    assert_eq!(Conn::open(addr, &ca).await.peer_cn, "webhook-b");

    stop.cancel();
    let answered = load.await.unwrap();
    assert!(answered > 0);
}

#[tokio::test]
async fn http2_is_negotiated() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), builtin).await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let tls = tls_client(&pki.ca_der(), &[b"h2"])
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1")
                .unwrap()
                .to_owned(),
            tcp,
        )
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::post("https://127.0.0.1/validate")
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            fixture("deployment-create-unannotated.json"),
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
}

#[tokio::test]
async fn before_sync_the_failure_policy_answers() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), |metrics| LiveState::watched(metrics).0).await;
    let (_, text) = post_once(
        server.addr,
        &pki.ca_der(),
        "/validate",
        fixture("deployment-create-agent-annotated.json"),
    )
    .await;
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 503);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("have not synced yet"),
        "{text}"
    );
}

#[tokio::test]
async fn a_policy_change_applies_to_the_next_request() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), builtin).await;
    let body = fixture("deployment-create-unannotated.json");
    let (_, text) = post_once(server.addr, &pki.ca_der(), "/validate", body.clone()).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["response"]["allowed"],
        false
    );
    let warn = CustodyPolicy::new(
        "relaxed",
        CustodyPolicySpec {
            mode: EnforcementMode::Warn,
            ..Default::default()
        },
    );
    server.live.set_policies(PolicySet::compile([warn]).0, 0);
    let (_, text) = post_once(server.addr, &pki.ca_der(), "/validate", body).await;
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["response"]["allowed"], true, "{text}");
    assert_eq!(
        review["response"]["warnings"].as_array().unwrap().len(),
        5,
        "{text}"
    );
}

#[tokio::test]
async fn shutdown_drains_and_stops() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), builtin).await;
    let mut conn = Conn::open(server.addr, &pki.ca_der()).await;
    assert_eq!(
        conn.post("/validate", fixture("deployment-delete.json"))
            .await
            .0,
        200
    );
    server.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), server.done)
        .await
        .expect("the server drains within the drain timeout")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "still listening after shutdown"
    );
}
