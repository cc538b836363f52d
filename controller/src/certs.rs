//! The webhook's serving certificate when cert-manager is not used: a CA and a serving
//! certificate kept in a Secret, the CA bundle of the webhook configurations kept in sync, and
//! rotation well before expiry.
//!
//! Rotation keeps the previous CA in the bundle (`ca.crt` holds both) until the next rotation,
//! so the apiserver trusts the old and the new serving certificate while webhook pods reload.
//! Every write is guarded by resourceVersion, so several replicas may run this at once.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio_util::sync::CancellationToken;

/// What to keep.
#[derive(Clone, Debug)]
pub struct CertConfig {
    /// The namespace of the Secret and the Service.
    pub namespace: String,
    /// The Secret (keys tls.crt, tls.key, ca.crt).
    pub secret_name: String,
    /// The webhook Service, whose DNS names the certificate covers.
    pub service_name: String,
    /// ValidatingWebhookConfigurations whose caBundle follows the CA.
    pub webhook_configurations: Vec<String>,
    /// How long a serving certificate is valid.
    pub validity: Duration,
    /// Rotate when less than this remains.
    pub renew_before: Duration,
}

/// Why certificate management failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The API refused a request.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A certificate could not be generated.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Why a new certificate is needed, if it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The current one is good.
    None,
    /// There is none, or it cannot be read.
    Missing,
    /// It expires within the renewal window.
    Expiring,
}

/// The DNS names the serving certificate must cover.
pub fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Whether the certificate in `data` must be renewed at `now`.
pub fn renewal(
    data: &BTreeMap<String, ByteString>,
    renew_before: Duration,
    now: Timestamp,
) -> Renewal {
    let Some(not_after) = data.get("tls.crt").and_then(|c| not_after(&c.0)) else {
        return Renewal::Missing;
    };
    if ["tls.key", "ca.crt"].iter().any(|k| !data.contains_key(*k)) {
        return Renewal::Missing;
    }
    let window = SignedDuration::try_from(renew_before).unwrap_or(SignedDuration::ZERO);
    if now.checked_add(window).map_or(true, |t| t >= not_after) {
        Renewal::Expiring
    } else {
        Renewal::None
    }
}

fn not_after(pem: &[u8]) -> Option<Timestamp> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
}

/// Issues a new CA and serving certificate; the returned Secret data keeps `previous_ca` in the
/// bundle so clients trust both during the rotation.
pub fn issue(
    config: &CertConfig,
    previous_ca: Option<&[u8]>,
    now: Timestamp,
) -> Result<BTreeMap<String, ByteString>, CertError> {
    let validity =
        SignedDuration::try_from(config.validity).unwrap_or(SignedDuration::from_hours(24 * 365));
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("custody-webhook-ca {now}"));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let yesterday = now
        .checked_sub(SignedDuration::from_hours(24))
        .unwrap_or(now);
    set_validity(
        &mut ca_params,
        yesterday,
        now.checked_add(validity * 2).unwrap_or(now),
    );
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(dns_names(&config.service_name, &config.namespace))?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{}.svc", config.service_name, config.namespace),
    );
    set_validity(
        &mut params,
        yesterday,
        now.checked_add(validity).unwrap_or(now),
    );
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;

    let mut bundle = ca.pem();
    if let Some(previous) = previous_ca {
        // Only the newest previous CA is kept: one rotation of overlap.
        if let Ok(prev) = std::str::from_utf8(previous)
            && let Some(first) = prev.split_inclusive("-----END CERTIFICATE-----").next()
        {
            bundle.push_str(first.trim_start());
            bundle.push('\n');
        }
    }
    Ok(BTreeMap::from([
        ("tls.crt".to_string(), ByteString(cert.pem().into_bytes())),
        (
            "tls.key".to_string(),
            ByteString(key.serialize_pem().into_bytes()),
        ),
        // The CA key is never stored: each rotation makes a new CA, so nothing needs it again.
        ("ca.crt".to_string(), ByteString(bundle.into_bytes())),
    ]))
}

/// rcgen takes calendar dates; validity is measured in months, so a day's precision is plenty.
fn set_validity(params: &mut CertificateParams, from: Timestamp, to: Timestamp) {
    let ymd = |t: Timestamp| {
        let date = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(
            i32::from(date.year()),
            date.month().unsigned_abs(),
            date.day().unsigned_abs(),
        )
    };
    params.not_before = ymd(from);
    params.not_after = ymd(to);
}

/// Makes the Secret current; returns the CA bundle now in force.
pub async fn ensure_secret(
    client: &Client,
    config: &CertConfig,
    now: Timestamp,
) -> Result<Vec<u8>, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let existing = api.get_opt(&config.secret_name).await?;
    let data = existing
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default();
    match renewal(&data, config.renew_before, now) {
        Renewal::None => return Ok(data.get("ca.crt").map(|c| c.0.clone()).unwrap_or_default()),
        why => {
            tracing::info!(secret = %config.secret_name, ?why, "issuing the webhook serving certificate")
        }
    }
    let fresh = issue(config, data.get("ca.crt").map(|c| c.0.as_slice()), now)?;
    let bundle = fresh.get("ca.crt").map(|c| c.0.clone()).unwrap_or_default();
    match existing {
        None => {
            let secret = Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some(config.secret_name.clone()),
                    namespace: Some(config.namespace.clone()),
                    labels: Some(
                        [(
                            "app.kubernetes.io/managed-by".to_string(),
                            "custody".to_string(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                data: Some(fresh),
                ..Default::default()
            };
            api.create(&PostParams::default(), &secret).await?;
        }
        Some(mut secret) => {
            // Replace is conditioned on the resourceVersion read above: a replica that lost the
            // race gets 409 and picks up the winner's certificate on its next pass.
            secret.data = Some(fresh);
            secret.type_ = Some("kubernetes.io/tls".into());
            api.replace(&config.secret_name, &PostParams::default(), &secret)
                .await?;
        }
    }
    Ok(bundle)
}

/// Sets the caBundle of every webhook of the named configurations, where it differs.
pub async fn sync_ca_bundles(
    client: &Client,
    config: &CertConfig,
    bundle: &[u8],
) -> Result<(), CertError> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for name in &config.webhook_configurations {
        let Some(vwc) = api.get_opt(name).await? else {
            tracing::debug!(%name, "webhook configuration not found yet");
            continue;
        };
        let webhooks = vwc.webhooks.unwrap_or_default();
        let ops: Vec<serde_json::Value> = webhooks
            .iter()
            .enumerate()
            .filter(|(_, w)| w.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()) != Some(bundle))
            .map(|(i, _)| {
                serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                                   "value": ByteString(bundle.to_vec())})
            })
            .collect();
        if ops.is_empty() {
            continue;
        }
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or_default();
        api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await?;
        tracing::info!(%name, "caBundle updated");
    }
    Ok(())
}

/// Keeps the Secret and the CA bundles current until `shutdown`, checking every `interval`.
pub async fn run(
    client: Client,
    config: CertConfig,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let pass = async {
            let bundle = ensure_secret(&client, &config, Timestamp::now()).await?;
            sync_ca_bundles(&client, &config, &bundle).await
        };
        if let Err(error) = pass.await {
            tracing::warn!(%error, "certificate management pass failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    fn config() -> CertConfig {
        CertConfig {
            namespace: "custody-system".into(),
            secret_name: "custody-webhook-tls".into(),
            service_name: "custody-webhook".into(),
            webhook_configurations: vec![],
            validity: Duration::from_secs(90 * 24 * 3600),
            renew_before: Duration::from_secs(30 * 24 * 3600),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn renewal_windows() {
        assert_eq!(
            renewal(&BTreeMap::new(), config().renew_before, now()),
            Renewal::Missing
        );
        let data = issue(&config(), None, now()).unwrap();
        assert_eq!(renewal(&data, config().renew_before, now()), Renewal::None);
        let later = now()
            .checked_add(SignedDuration::from_hours(24 * 61))
            .unwrap();
        assert_eq!(
            renewal(&data, config().renew_before, later),
            Renewal::Expiring
        );
        let mut partial = data.clone();
        partial.remove("tls.key");
        assert_eq!(
            renewal(&partial, config().renew_before, now()),
            Renewal::Missing
        );
    }

    #[test]
    fn the_serving_certificate_covers_the_service_and_chains_to_the_bundle() {
        let data = issue(&config(), None, now()).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(&data["tls.crt"].0).unwrap();
        let cert = pem.parse_x509().unwrap();
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        for name in dns_names("custody-webhook", "custody-system") {
            assert!(
                sans.iter().any(|s| s.contains(&name)),
                "{name} not in {sans:?}"
            );
        }
        // The apiserver's view: the serving certificate verifies against the bundle for the
        // Service's DNS name.
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&data["ca.crt"].0).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                ca_pem.contents.clone(),
            ))
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let (_, leaf) = x509_parser::pem::parse_x509_pem(&data["tls.crt"].0).unwrap();
        let name =
            rustls::pki_types::ServerName::try_from("custody-webhook.custody-system.svc").unwrap();
        let verified = verifier.verify_server_cert(
            &rustls::pki_types::CertificateDer::from(leaf.contents.clone()),
            &[],
            &name,
            &[],
            rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
        );
        assert!(verified.is_ok(), "{verified:?}");
    }

    #[test]
    fn rotation_keeps_the_previous_ca_in_the_bundle() {
        let first = issue(&config(), None, now()).unwrap();
        let second = issue(&config(), Some(&first["ca.crt"].0), now()).unwrap();
        let bundle = String::from_utf8(second["ca.crt"].0.clone()).unwrap();
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
        let first_ca = String::from_utf8(first["ca.crt"].0.clone()).unwrap();
        assert!(bundle.contains(first_ca.trim()), "the previous CA is kept");
        let third = issue(&config(), Some(&second["ca.crt"].0), now()).unwrap();
        assert_eq!(
            String::from_utf8(third["ca.crt"].0.clone())
                .unwrap()
                .matches("BEGIN CERTIFICATE")
                .count(),
            2,
            "only one previous CA"
        );
    }
}
