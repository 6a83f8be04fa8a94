//! natter's HTTP API: liveness, readiness, Prometheus metrics, the
//! cluster's assignment and node table, and the REST API (`rest/`), served
//! with a connection cap and header and idle timeouts of its own, so HTTP
//! clients can never take the descriptors or memory the chat ports need.
#![forbid(unsafe_code)]

pub mod admin;
mod listener;
pub mod rest;
mod web;

pub use listener::{serve, HttpConfig, HttpLimits, HEALTH_SLOTS};
pub use rest::{LiveFeed, LiveSessions, RestState};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Answers whether the node should be sent new work, and if not, why.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Which node a client should use, and the node table (JSON documents, so
/// this crate needs no cluster types).
pub trait ClusterView: Send + Sync + 'static {
    /// The node for a client; `user` (an id or a name) keys the sticky
    /// strategy; `avoid` names nodes the client could not reach. `None`
    /// when no node takes clients.
    fn assign(&self, user: Option<&str>, avoid: &[&str]) -> Option<serde_json::Value>;
    fn nodes(&self) -> serde_json::Value;
}

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct ApiState {
    /// Renders the process's metrics; `None` when no recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    pub ready: ReadinessCheck,
    pub cluster: Arc<dyn ClusterView>,
    /// The REST API (`/v1/...`), when the node serves it.
    pub rest: Option<RestState>,
}

/// The admin console and API alone, for a listener of their own.
pub fn admin_router(admin: admin::AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(admin::router(admin))
}

/// Everything the HTTP listener serves; with `admin`, the admin console
/// and API too.
pub fn router(state: ApiState, admin: Option<admin::AdminState>) -> Router {
    let rest = state.rest.clone().map(rest::router).unwrap_or_default();
    let admin = admin.map(admin::router).unwrap_or_default();
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/cluster/assign", get(assign))
        .route("/v1/cluster/nodes", get(nodes))
        .merge(web::router(state.rest.is_some()))
        .with_state(state)
        .merge(rest)
        .merge(admin)
}

/// `GET /v1/cluster/assign[?user=ID_OR_NAME][&avoid=NODE,NODE]`: `{node_id,
/// tcp, ws, http, tcp_tls, wss, https}`, or 503 with `{code, message, retry_after_ms}` when no
/// node takes clients.
async fn assign(State(s): State<ApiState>, RawQuery(q): RawQuery) -> impl IntoResponse {
    let param = |name: &str| {
        q.as_deref().and_then(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    };
    let user = param("user");
    let avoid = param("avoid").unwrap_or_default();
    let avoid: Vec<&str> = avoid
        .split(',')
        .filter(|a| !a.is_empty())
        .take(16)
        .collect();
    match s.cluster.assign(user.as_deref(), &avoid) {
        Some(node) => (StatusCode::OK, Json(node)),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "code": "UNAVAILABLE",
                "message": "no node takes clients now",
                "retry_after_ms": 1000,
            })),
        ),
    }
}

/// `GET /v1/cluster/nodes`: `{nodes: [...]}` with each node's load and state.
async fn nodes(State(s): State<ApiState>) -> impl IntoResponse {
    Json(serde_json::json!({ "nodes": s.cluster.nodes() }))
}

async fn readyz(State(s): State<ApiState>) -> impl IntoResponse {
    match (s.ready)().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    // Read as it is scraped: tasks come and go with every connection.
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    metrics::gauge!("natter_runtime_tasks").set(tasks as f64);
    match s.metrics {
        Some(h) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            [("content-type", "text/plain")],
            "metrics are disabled\n".to_owned(),
        ),
    }
}
