//! Prometheus's instant-query API (`POST /api/v1/query`, the query as a form), and anything serving it (Thanos,
//! Mimir, VictoriaMetrics). Bounded so a thousand rollouts in flight do not flood the server: at
//! most `concurrency` queries at once, each within a timeout, and an answer reused for the same
//! query at the same evaluation second. A query must return one number (a scalar, or a vector of
//! at most one sample: wrap it in `sum()`); an empty vector or NaN is no data, never an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::http::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::decide::analysis::Value;

/// Answers kept for reuse, at most; past it the oldest half goes.
const CACHE_ENTRIES: usize = 4096;
/// Bytes of an answer read, at most: one number takes a few hundred.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Where a metric's value comes from. Prometheus is the one built; others (Datadog, CloudWatch)
/// would implement the same.
pub trait MetricSource: Send + Sync {
    /// The value of `query` evaluated at `at`.
    fn value<'a>(
        &'a self,
        query: &'a str,
        at: Timestamp,
    ) -> BoxFuture<'a, Result<Value, QueryError>>;
}

/// Why a query has no answer. None of these is evidence against a revision.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The server did not answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent or its answer read.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The server refused the query (a PromQL error, a bad header, an overload).
    #[error("the server answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Prometheus's `errorType: error`, or the start of the body.
        message: String,
    },
    /// The answer is not one number.
    #[error("{0}")]
    Shape(String),
}

/// Why a provider cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The CA bundle holds no certificate, or one rustls refuses.
    #[error("the CA bundle: {0}")]
    Ca(String),
    /// The system's roots cannot be read.
    #[error("the system's trust roots: {0}")]
    Roots(std::io::Error),
    /// The address is not an http(s) URL.
    #[error("the address {0:?} is not an http:// or https:// URL")]
    Address(String),
}

/// A Prometheus server.
pub struct Prometheus {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    permits: Arc<Semaphore>,
    cache: Mutex<HashMap<(String, i64), (Instant, Value)>>,
}

/// How a Prometheus is reached.
pub struct Settings<'a> {
    /// Its base URL.
    pub address: &'a str,
    /// A PEM bundle trusted instead of the system's roots.
    pub ca_pem: Option<&'a [u8]>,
    /// Request headers (credentials, a tenant).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// How long a query may take.
    pub timeout: Duration,
    /// Queries in flight at most.
    pub concurrency: usize,
}

impl Prometheus {
    /// A client for the server `settings` names.
    pub fn new(settings: Settings<'_>) -> Result<Self, ProviderError> {
        let address = settings.address.trim_end_matches('/');
        if !(address.starts_with("https://") || address.starts_with("http://")) {
            return Err(ProviderError::Address(address.to_string()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match settings.ca_pem {
            Some(pem) => builder.with_tls_config(tls_trusting(pem, provider)?),
            None => builder
                .with_provider_and_native_roots(provider)
                .map_err(ProviderError::Roots)?,
        };
        let https = builder.https_or_http().enable_http1().build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            base: address.to_string(),
            headers: settings.headers,
            timeout: settings.timeout,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            cache: Mutex::default(),
        })
    }

    async fn fetch(&self, query: &str, at: Timestamp) -> Result<Value, QueryError> {
        // POSTed as a form, as Prometheus's API allows: a `{{pods}}` regex of many Pods would
        // make a long URL, which proxies in front of a Prometheus limit.
        let form = format!("query={}&time={}", encode(query), at.as_second());
        let mut request = hyper::Request::post(format!("{}/api/v1/query", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| QueryError::Unreachable(e.to_string()))?;
        let answer = tokio::time::timeout(self.timeout, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| QueryError::Unreachable(e.to_string()))?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| QueryError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, QueryError>((status, body))
        })
        .await
        .map_err(|_| QueryError::Timeout(self.timeout))??;
        parse(answer.0, &answer.1)
    }

    fn cached(&self, key: &(String, i64)) -> Option<Value> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).map(|(_, v)| *v)
    }

    fn remember(&self, key: (String, i64), value: Value) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            let mut ages: Vec<Instant> = cache.values().map(|(t, _)| *t).collect();
            ages.sort();
            let cut = ages[ages.len() / 2];
            cache.retain(|_, (t, _)| *t > cut);
        }
        cache.insert(key, (Instant::now(), value));
    }
}

impl MetricSource for Prometheus {
    fn value<'a>(
        &'a self,
        query: &'a str,
        at: Timestamp,
    ) -> BoxFuture<'a, Result<Value, QueryError>> {
        Box::pin(async move {
            let key = (query.to_string(), at.as_second());
            if let Some(value) = self.cached(&key) {
                return Ok(value);
            }
            let value = self.fetch(query, at).await?;
            self.remember(key, value);
            Ok(value)
        })
    }
}

/// A TLS configuration trusting only the certificates of `pem`.
fn tls_trusting(
    pem: &[u8],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<rustls::ClientConfig, ProviderError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ProviderError::Ca(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ProviderError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ProviderError::Ca("no PEM certificate in it".into()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProviderError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Percent-encodes a query parameter (everything but unreserved characters).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

/// One number out of an answer.
fn parse(status: u16, body: &[u8]) -> Result<Value, QueryError> {
    let answer: Answer = serde_json::from_slice(body).map_err(|_| QueryError::Refused {
        status,
        message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    })?;
    if answer.status != "success" || !(200..300).contains(&status) {
        return Err(QueryError::Refused {
            status,
            message: format!(
                "{}: {}",
                answer.error_type.unwrap_or_default(),
                answer.error.unwrap_or_default()
            ),
        });
    }
    let data = answer
        .data
        .ok_or_else(|| QueryError::Shape("a success without data".into()))?;
    let text = match data.result_type.as_str() {
        "scalar" => {
            serde_json::from_value::<(f64, String)>(data.result)
                .map_err(|e| QueryError::Shape(format!("a scalar that is not [time, value]: {e}")))?
                .1
        }
        "vector" => {
            let mut samples: Vec<Sample> = serde_json::from_value(data.result)
                .map_err(|e| QueryError::Shape(format!("a vector that is not samples: {e}")))?;
            match samples.len() {
                0 => return Ok(None),
                1 => samples.remove(0).value.1,
                n => {
                    return Err(QueryError::Shape(format!(
                        "the query returned {n} series, not one number: aggregate it (sum, max, avg)"
                    )));
                }
            }
        }
        other => {
            return Err(QueryError::Shape(format!(
                "the query returned a {other}, not one number: use an instant vector or a scalar"
            )));
        }
    };
    let value: f64 = text
        .parse()
        .map_err(|_| QueryError::Shape(format!("{text:?} is not a number")))?;
    Ok((!value.is_nan()).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_or_no_data() {
        let vector = |result: &str| {
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#)
        };
        assert_eq!(
            parse(
                200,
                vector(r#"[{"metric":{},"value":[1700000000.1,"0.05"]}]"#).as_bytes()
            )
            .unwrap(),
            Some(0.05)
        );
        assert_eq!(parse(200, vector("[]").as_bytes()).unwrap(), None);
        assert_eq!(
            parse(
                200,
                vector(r#"[{"metric":{},"value":[1,"NaN"]}]"#).as_bytes()
            )
            .unwrap(),
            None
        );
        assert_eq!(
            parse(
                200,
                vector(r#"[{"metric":{},"value":[1,"+Inf"]}]"#).as_bytes()
            )
            .unwrap(),
            Some(f64::INFINITY)
        );
        let two = vector(
            r#"[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]"#,
        );
        assert!(
            matches!(parse(200, two.as_bytes()), Err(QueryError::Shape(m)) if m.contains("2 series"))
        );
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(parse(200, scalar.as_bytes()).unwrap(), Some(3.0));
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(
            parse(200, matrix.as_bytes()),
            Err(QueryError::Shape(_))
        ));
    }

    #[test]
    fn refusals_say_what_the_server_said() {
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        match parse(400, bad.as_bytes()) {
            Err(QueryError::Refused { status, message }) => {
                assert_eq!(status, 400);
                assert_eq!(message, "bad_data: parse error at char 4");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(502, b"<html>bad gateway</html>"),
            Err(QueryError::Refused { status: 502, message }) if message.contains("bad gateway")
        ));
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode(r#"sum(x{pod=~"a|b"}[2m])"#),
            "sum%28x%7Bpod%3D~%22a%7Cb%22%7D%5B2m%5D%29"
        );
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        assert!(matches!(
            tls_trusting(b"not pem", provider),
            Err(ProviderError::Ca(_))
        ));
    }
}
