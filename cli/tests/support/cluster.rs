//! A cluster to run `kubectl custody` against: the testkit's fake API server behind a front that
//! answers what the fake does not, as an apiserver with Custody installed would. The front says
//! who the caller is (a SelfSubjectReview answers with the kubeconfig's bearer token, which is
//! the person's user name) and judges every write of a CustodyChange with the engine's
//! `validate_change` before the fake stores it, as the webhook does; its refusal comes back as
//! the apiserver sends a webhook's. Each person gets a kubeconfig.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custody_crds::{CustodyPolicy, CustodyTeam};
use custody_engine::{ChangeReview, PolicySet, TeamIndex, validate_change};
use custody_testkit::fake_apiserver::{FakeApiServer, merge};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::cli::Scratch;

/// Where the fake keeps CustodyChanges.
pub const CHANGES: &str = "apis/custody.dev/v1alpha1/custodychanges";
/// The name the apiserver quotes a refusal of the webhook under.
pub const WEBHOOK: &str = "changes.custody.dev";

/// One write the front saw: method, path, body.
pub type Logged = (Method, String, Value);

/// The fake API server with its front, and a scratch directory for kubeconfigs and manifests.
pub struct Cluster {
    /// The fake, to seed and inspect.
    pub fake: FakeApiServer,
    /// The scratch directory.
    pub dir: Scratch,
    front: String,
    log: Arc<Mutex<Vec<Logged>>>,
}

struct Front {
    fake: FakeApiServer,
    http: HttpClient<HttpConnector, Body>,
    policies: PolicySet,
    teams: TeamIndex,
    log: Arc<Mutex<Vec<Logged>>>,
}

impl Cluster {
    /// Starts the fake and its front; the policies and teams are stored in the fake (for `why`)
    /// and judge CustodyChange writes.
    pub async fn start(name: &str, policies: &[CustodyPolicy], teams: &[CustodyTeam]) -> Self {
        let fake = FakeApiServer::start().await.unwrap();
        for p in policies {
            fake.upsert(
                "apis/custody.dev/v1alpha1/custodypolicies",
                serde_json::to_value(p).unwrap(),
            );
        }
        for t in teams {
            fake.upsert(
                "apis/custody.dev/v1alpha1/custodyteams",
                serde_json::to_value(t).unwrap(),
            );
        }
        let (compiled, errors) = PolicySet::compile(policies.iter().cloned());
        assert!(errors.is_empty(), "{errors:?}");
        let (team_index, errors) = TeamIndex::compile(teams);
        assert!(errors.is_empty(), "{errors:?}");
        let log = Arc::new(Mutex::new(Vec::new()));
        let front = Arc::new(Front {
            fake: fake.clone(),
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
            policies: compiled,
            teams: team_index,
            log: log.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(front);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            fake,
            dir: Scratch::new(name),
            front: url,
            log,
        }
    }

    /// Writes a file into the scratch directory; returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// The writes (POST, PATCH, PUT) the front saw so far.
    pub fn writes(&self) -> Vec<Logged> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| *m != Method::GET && !p.ends_with("/selfsubjectreviews"))
            .cloned()
            .collect()
    }

    /// Every request the front saw so far, as (method, path).
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(m, p, _)| (m.clone(), p.clone()))
            .collect()
    }

    /// Runs `kubectl-custody ARGS` as `user` (namespace `shop` in the kubeconfig): (exit code,
    /// stdout, stderr).
    pub async fn kubectl_custody(&self, user: &str, args: &[&str]) -> (i32, String, String) {
        let kubeconfig = self.kubeconfig(user);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let dir = self.dir.0.clone();
        tokio::task::spawn_blocking(move || {
            run(
                env!("CARGO_BIN_EXE_kubectl-custody"),
                &dir,
                &kubeconfig,
                &args,
            )
        })
        .await
        .unwrap()
    }

    fn kubeconfig(&self, user: &str) -> PathBuf {
        let path = self
            .dir
            .0
            .join(format!("kubeconfig-{}", user.replace([':', '@'], "_")));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: {:?}}}\nusers:\n- name: me\n  user: {{token: {user:?}}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: me, namespace: shop}}\ncurrent-context: fake\n",
            self.front
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn run(
    binary: &str,
    dir: &PathBuf,
    kubeconfig: &PathBuf,
    args: &[String],
) -> (i32, String, String) {
    let mut command = std::process::Command::new(binary);
    command.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("CUSTODY_") || k.starts_with("KUBERNETES_") {
            command.env_remove(k);
        }
    }
    let out = command
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn handle(State(front): State<Arc<Front>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, 16 * 1024 * 1024).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let path = parts.uri.path().to_string();
    let user = bearer(&parts.headers);
    front
        .log
        .lock()
        .unwrap()
        .push((parts.method.clone(), path.clone(), body.clone()));
    if parts.method == Method::POST && path.ends_with("/selfsubjectreviews") {
        let review = json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {}, "status": {"userInfo": {"username": user, "groups": ["system:authenticated"]}}
        });
        return (StatusCode::CREATED, axum::Json(review)).into_response();
    }
    if path.contains("/custodychanges")
        && let Some(denial) = front.judge(&parts.method, &path, &parts.headers, &body, &user)
    {
        return denial;
    }
    // The apiserver stamps a new object's creation time; the fake's fixed one would make every
    // change request look expired.
    let bytes = match (&parts.method, body) {
        (&Method::POST, mut object) if object.get("metadata").is_some_and(Value::is_object) => {
            object["metadata"]["creationTimestamp"] = json!(
                jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string()
            );
            serde_json::to_vec(&object).unwrap().into()
        }
        _ => bytes,
    };
    forward(&front, parts, bytes).await
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string()
}

async fn forward(
    front: &Front,
    parts: axum::http::request::Parts,
    body: axum::body::Bytes,
) -> Response {
    let fake: axum::http::Uri = front.fake.url().parse().unwrap();
    let uri = axum::http::Uri::builder()
        .scheme("http")
        .authority(fake.authority().unwrap().clone())
        .path_and_query(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .unwrap();
    let mut request = axum::http::Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        // The body may have been rewritten; hyper sets its length.
        if name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    match front
        .http
        .request(request.body(Body::from(body)).unwrap())
        .await
    {
        Ok(response) => response.map(Body::new),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

impl Front {
    /// The webhook's verdict on a CustodyChange write; `Some` answer when it refuses.
    fn judge(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &Value,
        user: &str,
    ) -> Option<Response> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // apis/custody.dev/v1alpha1/namespaces/NS/custodychanges[/NAME[/status]]
        let namespace = *segments.get(4)?;
        let (operation, object, old, sub_resource) = match *method {
            Method::POST => {
                let mut object = body.clone();
                object["metadata"]["namespace"] = json!(namespace);
                ("CREATE", object, Value::Null, None)
            }
            Method::PATCH => {
                let name = segments.get(6)?;
                let old = self.fake.get(CHANGES, namespace, name)?;
                let merge_patch = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/merge-patch+json"));
                let wanted = body["metadata"]["resourceVersion"].as_str();
                // A stale version is a conflict before admission runs, as in the apiserver.
                if !merge_patch
                    || wanted
                        .is_some_and(|rv| Some(rv) != old["metadata"]["resourceVersion"].as_str())
                {
                    return None;
                }
                let status = segments.get(7) == Some(&"status");
                let mut object = old.clone();
                let patch = if status {
                    json!({"status": body.get("status").cloned().unwrap_or(Value::Null)})
                } else {
                    body.clone()
                };
                merge(&mut object, &patch);
                ("UPDATE", object, old, status.then_some("status"))
            }
            _ => return None,
        };
        let review = json!({"request": {
            "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": "CustodyChange"},
            "subResource": sub_resource,
            "operation": operation,
            "namespace": namespace,
            "name": object["metadata"]["name"],
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
        }})
        .to_string();
        let request = crate::support::request(review.as_bytes());
        let decision = validate_change(
            &request,
            &ChangeReview {
                policies: &self.policies,
                teams: &self.teams,
                namespace_labels: None,
                now: jiff::Timestamp::now(),
                controller: &[],
            },
        );
        if decision.allowed {
            return None;
        }
        let message = format!(
            "admission webhook \"{WEBHOOK}\" denied the request: {}",
            decision.message.unwrap_or_default()
        );
        let status = StatusCode::from_u16(decision.code).unwrap_or(StatusCode::FORBIDDEN);
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Forbidden", "code": status.as_u16()});
        Some((status, axum::Json(body)).into_response())
    }
}
