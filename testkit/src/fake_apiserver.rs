//! An in-process Kubernetes API server on loopback, for tests and benchmarks that must not need a
//! cluster. It speaks the parts of the API that kube's client and watcher use: list, watch
//! (streamed JSON lines, resumable from a resourceVersion), get, create, replace, merge / JSON /
//! apply patches with resourceVersion preconditions (409 on conflict), status subresources and
//! delete, for any resource path. Faults can be injected per method and path.
//!
//! It is deliberately schemaless: objects are JSON, resources are keyed by their URL path.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A running fake API server.
#[derive(Clone)]
pub struct FakeApiServer {
    addr: SocketAddr,
    inner: Arc<Shared>,
    shutdown: CancellationToken,
}

struct Shared {
    state: Mutex<Inner>,
    events: broadcast::Sender<Logged>,
}

#[derive(Default)]
struct Inner {
    resource_version: u64,
    /// Objects by resource key (`apis/apps/v1/deployments`), then (namespace, name).
    objects: HashMap<String, BTreeMap<(String, String), Value>>,
    /// Every change, for watches that resume from a resourceVersion.
    history: Vec<Logged>,
    faults: VecDeque<Fault>,
    requests: Vec<(std::time::Instant, Method, String)>,
}

#[derive(Clone, Debug)]
struct Logged {
    resource_version: u64,
    resource: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// A failure to answer instead of the real response.
#[derive(Clone, Debug)]
pub struct Fault {
    /// The method it applies to.
    pub method: Method,
    /// A substring of the path it applies to.
    pub path_contains: String,
    /// The status to answer.
    pub status: StatusCode,
    /// How many requests it applies to.
    pub times: usize,
}

struct Target {
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl FakeApiServer {
    /// Starts the server on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> std::io::Result<Self> {
        let (events, _) = broadcast::channel(65_536);
        let inner = Arc::new(Shared {
            state: Mutex::new(Inner::default()),
            events,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        // As a real API server does (Go sets TCP_NODELAY by default): without it, each watch
        // event after the first waits for the client's delayed ACK, up to 40 ms.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let shutdown = CancellationToken::new();
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            inner,
            shutdown,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving; open watches end.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Creates or replaces an object under a resource key such as `apis/apps/v1/deployments` or
    /// `api/v1/pods`, as a watch would see it (ADDED or MODIFIED). Returns it as stored.
    pub fn upsert(&self, resource: &str, object: Value) -> Value {
        let mut state = self.lock();
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let exists = state
            .objects
            .get(resource)
            .is_some_and(|c| c.contains_key(&(ns.clone(), name.clone())));
        let kind = if exists { "MODIFIED" } else { "ADDED" };
        store(
            &mut state,
            &self.inner.events,
            resource,
            &ns,
            &name,
            object,
            kind,
        )
    }

    /// Deletes an object, as a watch would see it.
    pub fn remove(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let mut state = self.lock();
        remove(&mut state, &self.inner.events, resource, namespace, name)
    }

    /// The stored object, if any.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(resource)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every stored object of a resource.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        self.lock()
            .objects
            .get(resource)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Answers the next `times` requests matching `method` and `path_contains` with `status`.
    pub fn inject(&self, method: Method, path_contains: &str, status: StatusCode, times: usize) {
        self.lock().faults.push_back(Fault {
            method,
            path_contains: path_contains.to_string(),
            status,
            times,
        });
    }

    /// Every request received so far, as (method, path).
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.lock()
            .requests
            .iter()
            .map(|(_, m, p)| (m.clone(), p.clone()))
            .collect()
    }

    /// Every request received so far, with the instant it arrived.
    pub fn timed_requests(&self) -> Vec<(std::time::Instant, Method, String)> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn store(
    state: &mut Inner,
    events: &broadcast::Sender<Logged>,
    resource: &str,
    ns: &str,
    name: &str,
    mut object: Value,
    kind: &'static str,
) -> Value {
    state.resource_version += 1;
    let rv = state.resource_version;
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.entry("uid")
            .or_insert_with(|| json!(format!("uid-{name}-{rv}")));
        meta.entry("creationTimestamp")
            .or_insert_with(|| json!("2026-01-01T00:00:00Z"));
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta.insert("generation".into(), json!(generation.max(1)));
    }
    state
        .objects
        .entry(resource.to_string())
        .or_default()
        .insert((ns.to_string(), name.to_string()), object.clone());
    let logged = Logged {
        resource_version: rv,
        resource: resource.to_string(),
        namespace: ns.to_string(),
        kind,
        object: object.clone(),
    };
    state.history.push(logged.clone());
    let _ = events.send(logged);
    object
}

fn remove(
    state: &mut Inner,
    events: &broadcast::Sender<Logged>,
    resource: &str,
    ns: &str,
    name: &str,
) -> Option<Value> {
    let mut object = state
        .objects
        .get_mut(resource)?
        .remove(&(ns.to_string(), name.to_string()))?;
    state.resource_version += 1;
    let rv = state.resource_version;
    object["metadata"]["resourceVersion"] = json!(rv.to_string());
    let logged = Logged {
        resource_version: rv,
        resource: resource.to_string(),
        namespace: ns.to_string(),
        kind: "DELETED",
        object: object.clone(),
    };
    state.history.push(logged.clone());
    let _ = events.send(logged);
    Some(object)
}

fn parse_target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (format!("api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, tail @ ..] => (Some(ns.to_string()), (*resource, tail)),
        [resource, tail @ ..] => (None, (*resource, tail)),
        [] => return None,
    };
    let (resource, tail) = rest;
    Some(Target {
        resource: format!("{prefix}/{resource}"),
        namespace,
        name: tail.first().map(|s| s.to_string()),
        subresource: tail.get(1).map(|s| s.to_string()),
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code.as_u16()})
        .to_string(),
    )
        .into_response()
}

fn ok_json(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    {
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .requests
            .push((std::time::Instant::now(), method.clone(), path.clone()));
        if let Some(i) = state
            .faults
            .iter()
            .position(|f| f.method == method && path.contains(&f.path_contains))
        {
            let code = state.faults[i].status;
            state.faults[i].times -= 1;
            if state.faults[i].times == 0 {
                state.faults.remove(i);
            }
            let reason = if code == StatusCode::CONFLICT {
                "Conflict"
            } else {
                "InternalError"
            };
            return status(code, reason, "injected fault");
        }
    }
    let Some(target) = parse_target(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no route for {path}"),
        );
    };
    match (method, target.name.is_some()) {
        (Method::GET, false) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&shared, &target, &query)
        }
        (Method::GET, false) => list(&shared, &target, &query),
        (Method::GET, true) => get(&shared, &target),
        (Method::POST, false) => create(&shared, &target, &body),
        (Method::PUT, true) => replace(&shared, &target, &body),
        (Method::PATCH, true) => patch(&shared, &target, &headers, &body),
        (Method::DELETE, true) => delete(&shared, &target),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported by the fake",
        ),
    }
}

fn list(shared: &Shared, target: &Target, query: &HashMap<String, String>) -> Response {
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let items: Vec<&Value> = state
        .objects
        .get(&target.resource)
        .map(|c| {
            c.iter()
                .filter(|((ns, _), _)| target.namespace.as_ref().is_none_or(|t| t == ns))
                .map(|(_, v)| v)
                .collect()
        })
        .unwrap_or_default();
    // Paginated like the real apiserver: `limit` items per page, `continue` is the offset.
    let offset: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(items.len());
    let page = &items[offset.min(end)..end];
    let mut metadata = json!({"resourceVersion": state.resource_version.to_string()});
    if end < items.len() {
        metadata["continue"] = json!(end.to_string());
    }
    ok_json(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "List", "metadata": metadata, "items": page}),
    )
}

fn watch(shared: &Arc<Shared>, target: &Target, query: &HashMap<String, String>) -> Response {
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Subscribe before reading history, so nothing falls between the two.
    let live = shared.events.subscribe();
    let backlog: Vec<Logged> = {
        let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .history
            .iter()
            .filter(|l| l.resource_version > since)
            .cloned()
            .collect()
    };
    let last_backlog = backlog.last().map_or(since, |l| l.resource_version);
    let resource = target.resource.clone();
    let namespace = target.namespace.clone();
    let matches = move |l: &Logged| {
        l.resource == resource && namespace.as_ref().is_none_or(|ns| *ns == l.namespace)
    };
    let matches_live = matches.clone();
    let line = |l: &Logged| {
        Ok::<_, std::io::Error>(Bytes::from(format!(
            "{}\n",
            json!({"type": l.kind, "object": l.object})
        )))
    };
    let backlog = futures::stream::iter(
        backlog
            .into_iter()
            .filter(move |l| matches(l))
            .map(move |l| line(&l)),
    );
    let live = tokio_stream_from(live)
        .filter(move |l| {
            futures::future::ready(l.resource_version > last_backlog && matches_live(l))
        })
        .map(move |l| line(&l));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(backlog.chain(live)))
        .unwrap_or_else(|_| {
            status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "cannot stream",
            )
        })
}

fn tokio_stream_from(rx: broadcast::Receiver<Logged>) -> impl futures::Stream<Item = Logged> {
    futures::stream::unfold(rx, |mut rx| async move {
        // Lagging (a slow watcher missed events) ends the watch, as a 410 would; so does close.
        rx.recv().await.ok().map(|logged| (logged, rx))
    })
}

fn get(shared: &Shared, target: &Target) -> Response {
    let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    );
    match state
        .objects
        .get(&target.resource)
        .and_then(|c| c.get(&key))
    {
        Some(object) => ok_json(StatusCode::OK, object),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} {:?} not found", target.resource, key.1),
        ),
    }
}

fn create(shared: &Shared, target: &Target, body: &[u8]) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
    };
    let ns = target.namespace.clone().unwrap_or_default();
    if !ns.is_empty() {
        object["metadata"]["namespace"] = json!(ns);
    }
    let name = match object["metadata"]["name"].as_str() {
        Some(n) => n.to_string(),
        None => match object["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                let state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                let n = format!("{prefix}{}", state.resource_version + 1);
                drop(state);
                object["metadata"]["name"] = json!(n);
                n
            }
            None => {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name is required",
                );
            }
        },
    };
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    if state
        .objects
        .get(&target.resource)
        .is_some_and(|c| c.contains_key(&(ns.clone(), name.clone())))
    {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{name} already exists"),
        );
    }
    let stored = store(
        &mut state,
        &shared.events,
        &target.resource,
        &ns,
        &name,
        object,
        "ADDED",
    );
    ok_json(StatusCode::CREATED, &stored)
}

fn current(state: &Inner, target: &Target) -> Option<Value> {
    let key = (
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    );
    state.objects.get(&target.resource)?.get(&key).cloned()
}

fn replace(shared: &Shared, target: &Target, body: &[u8]) -> Response {
    let Ok(object) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "body is not JSON");
    };
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let ns = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    match current(&state, target) {
        Some(existing) => {
            let expected = object["metadata"]["resourceVersion"].as_str();
            if expected
                .is_some_and(|rv| Some(rv) != existing["metadata"]["resourceVersion"].as_str())
            {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let stored = store(
                &mut state,
                &shared.events,
                &target.resource,
                &ns,
                &name,
                object,
                "MODIFIED",
            );
            ok_json(StatusCode::OK, &stored)
        }
        None if target.resource.ends_with("/leases") => {
            let stored = store(
                &mut state,
                &shared.events,
                &target.resource,
                &ns,
                &name,
                object,
                "ADDED",
            );
            ok_json(StatusCode::CREATED, &stored)
        }
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{name} not found"),
        ),
    }
}

fn patch(shared: &Shared, target: &Target, headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "patch is not JSON");
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let ns = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    let is_apply = content_type.starts_with("application/apply-patch");
    let mut object = match current(&state, target) {
        Some(o) => o,
        None if is_apply => json!({"metadata": {"name": name, "namespace": ns}}),
        None => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{name} not found"),
            );
        }
    };
    let before_rv = object["metadata"]["resourceVersion"].clone();
    if content_type.starts_with("application/json-patch+json") {
        let Ok(ops) = serde_json::from_value::<json_patch::Patch>(patch) else {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "invalid JSON patch");
        };
        if let Err(error) = json_patch::patch(&mut object, &ops) {
            // A failed `test` operation is how clients express preconditions.
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                &format!("patch precondition failed: {error}"),
            );
        }
    } else {
        let expected = patch["metadata"]["resourceVersion"].as_str();
        if expected.is_some_and(|rv| Some(rv) != before_rv.as_str()) {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            );
        }
        let patch = match target.subresource.as_deref() {
            Some("status") => {
                json!({"status": patch.get("status").cloned().unwrap_or(Value::Null)})
            }
            _ => patch,
        };
        merge(&mut object, &patch);
    }
    let spec_changed =
        current(&state, target).is_none_or(|old| old.get("spec") != object.get("spec"));
    if spec_changed && target.subresource.is_none() {
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
        object["metadata"]["generation"] = json!(generation + 1);
    }
    let kind = if before_rv.is_null() {
        "ADDED"
    } else {
        "MODIFIED"
    };
    let stored = store(
        &mut state,
        &shared.events,
        &target.resource,
        &ns,
        &name,
        object,
        kind,
    );
    ok_json(StatusCode::OK, &stored)
}

fn delete(shared: &Shared, target: &Target) -> Response {
    let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
    let ns = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    match remove(&mut state, &shared.events, &target.resource, &ns, &name) {
        Some(object) => ok_json(StatusCode::OK, &object),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{name} not found"),
        ),
    }
}

/// JSON merge patch (RFC 7386): objects merge recursively, null deletes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (_, Some(p)) => {
            *target = Value::Object(Default::default());
            merge(target, &Value::Object(p.clone()));
        }
        _ => *target = patch.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let t = parse_target("/apis/apps/v1/namespaces/shop/deployments/web/status").unwrap();
        assert_eq!(
            (
                t.resource.as_str(),
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            (
                "apis/apps/v1/deployments",
                Some("shop"),
                Some("web"),
                Some("status")
            )
        );
        let t = parse_target("/api/v1/namespaces").unwrap();
        assert_eq!(
            (t.resource.as_str(), t.namespace, t.name),
            ("api/v1/namespaces", None, None)
        );
        let t = parse_target("/api/v1/namespaces/shop").unwrap();
        assert_eq!(
            (t.resource.as_str(), t.name.as_deref()),
            ("api/v1/namespaces", Some("shop"))
        );
        let t = parse_target("/apis/custody.dev/v1alpha1/custodypolicies").unwrap();
        assert_eq!(t.resource, "apis/custody.dev/v1alpha1/custodypolicies");
    }

    #[test]
    fn merge_patch() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut v, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(v, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
