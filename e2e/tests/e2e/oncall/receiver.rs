//! The receivers of the on-call scenario: one HTTP server on 127.0.0.1 in the test process for
//! Custody's Slack (`/slack`), PagerDuty (`/pd`) and CloudEvents (`/ce`) targets, which checks
//! every body against its format's schema, and for Alertmanager's webhook (`/am`), which it only
//! keeps.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// One POST a receiver got.
#[derive(Clone, Debug)]
pub(super) struct Post {
    pub path: String,
    pub body: Value,
    pub at: Timestamp,
}

/// What the receivers got, and every body that broke its format's schema, with why.
#[derive(Clone, Default)]
pub(super) struct Inbox {
    posts: Arc<Mutex<Vec<Post>>>,
    broken: Arc<Mutex<Vec<String>>>,
}

impl Inbox {
    /// The bodies POSTed to `path` that `keep` keeps, oldest first.
    pub fn at(&self, path: &str, keep: impl Fn(&Value) -> bool) -> Vec<Post> {
        self.posts
            .lock()
            .map(|p| {
                p.iter()
                    .filter(|p| p.path == path && keep(&p.body))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn broken(&self) -> Vec<String> {
        self.broken.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// The schema the bodies at `path` must meet: Custody's targets. `/am` is Alertmanager's own
/// webhook, which the scenario only reads.
fn format_of(path: &str) -> Option<&'static str> {
    match path {
        "/slack" => Some("slack"),
        "/pd" => Some("pagerduty"),
        "/ce" => Some("cloudevents"),
        _ => None,
    }
}

async fn receive(
    Path(path): Path<String>,
    State(inbox): State<Inbox>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let path = format!("/{path}");
    let mut problems = Vec::new();
    let body = serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|e| {
        problems.push(format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        ));
        Value::Null
    });
    if let Some(format) = format_of(&path)
        && !body.is_null()
        && let Err(p) = custody_testkit::schemas::check(format, &body)
    {
        problems.extend(p);
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if path == "/ce" && !content_type.starts_with("application/cloudevents+json") {
        problems.push(format!(
            "content-type {content_type:?}, not application/cloudevents+json (structured mode)"
        ));
    }
    if !problems.is_empty()
        && let Ok(mut b) = inbox.broken.lock()
    {
        b.push(format!("{path}: {}: {body}", problems.join("; ")));
    }
    let answer = if path == "/pd" {
        // What PagerDuty's Events API answers.
        (
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "success", "message": "Event processed",
                              "dedup_key": body["dedup_key"]})),
        )
            .into_response()
    } else {
        (StatusCode::OK, "ok").into_response()
    };
    if let Ok(mut p) = inbox.posts.lock() {
        p.push(Post {
            path,
            body,
            at: Timestamp::now(),
        });
    }
    answer
}

/// The receivers: an HTTP server on 127.0.0.1 for as long as the scenario runs.
pub(super) struct Receiver {
    pub base: String,
    pub inbox: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let inbox = Inbox::default();
        let app = Router::new()
            .route("/{path}", post(receive))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base, inbox, task })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
