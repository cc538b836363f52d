//! A local HTTP receiver of notifications: it accepts POSTs at any `/{path}` and keeps the
//! headers and JSON body of each.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;

/// What a receiver got: the headers and the JSON body of each POST, by path.
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<(String, HeaderMap, Value)>>>);

impl Received {
    /// What was POSTed at `path`, in order.
    pub fn at(&self, path: &str) -> Vec<(HeaderMap, Value)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, h, v)| (h.clone(), v.clone()))
            .collect()
    }
}

/// A receiver on 127.0.0.1: its base URL, and what it got.
pub async fn receiver() -> (String, Received) {
    async fn record(
        Path(path): Path<String>,
        State(received): State<Received>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) {
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        received
            .0
            .lock()
            .unwrap()
            .push((format!("/{path}"), headers, value));
    }
    let received = Received::default();
    let app = Router::new()
        .route("/{*path}", post(record))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}
