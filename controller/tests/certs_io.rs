//! Certificate management against the in-process API server: the Secret is created, the CA
//! bundle lands in the webhook configuration, and a second pass changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use custody_controller::certs::{CertConfig, ensure_secret, sync_ca_bundles};
use custody_testkit::fake_apiserver::FakeApiServer;
use http::Method;
use serde_json::json;

#[tokio::test]
async fn bootstraps_the_secret_and_the_ca_bundle() {
    let api = FakeApiServer::start().await.unwrap();
    api.upsert("apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "custody-workloads"},
        "webhooks": [{"name": "workloads.custody.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "clientConfig": {"service": {"name": "custody-webhook", "namespace": "custody-system", "path": "/validate"}}}]
    }));
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let config = CertConfig {
        namespace: "custody-system".into(),
        secret_name: "custody-webhook-tls".into(),
        service_name: "custody-webhook".into(),
        webhook_configurations: vec!["custody-workloads".into(), "not-installed-yet".into()],
        validity: Duration::from_secs(90 * 86_400),
        renew_before: Duration::from_secs(30 * 86_400),
    };
    let bundle = ensure_secret(&client, &config, jiff::Timestamp::now())
        .await
        .unwrap();
    sync_ca_bundles(&client, &config, &bundle).await.unwrap();
    let secret = api
        .get("api/v1/secrets", "custody-system", "custody-webhook-tls")
        .unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert!(secret["data"]["tls.crt"].is_string() && secret["data"]["tls.key"].is_string());
    let vwc = api
        .get(
            "apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
            "",
            "custody-workloads",
        )
        .unwrap();
    assert_eq!(
        vwc["webhooks"][0]["clientConfig"]["caBundle"],
        secret["data"]["ca.crt"]
    );

    // A second pass (another replica, or the next tick) writes nothing.
    let writes_before = api
        .requests()
        .iter()
        .filter(|(m, _)| *m != Method::GET)
        .count();
    let again = ensure_secret(&client, &config, jiff::Timestamp::now())
        .await
        .unwrap();
    sync_ca_bundles(&client, &config, &again).await.unwrap();
    assert_eq!(again, bundle);
    assert_eq!(
        api.requests()
            .iter()
            .filter(|(m, _)| *m != Method::GET)
            .count(),
        writes_before
    );
}
