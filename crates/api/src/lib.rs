//! natter's HTTP API: liveness, readiness and Prometheus metrics, served
//! with a connection cap and header and idle timeouts of its own, so HTTP
//! clients can never take the descriptors or memory the chat ports need.
#![forbid(unsafe_code)]

mod listener;

pub use listener::{serve, HttpLimits};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Answers whether the node should be sent new work, and if not, why.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct ApiState {
    /// Renders the process's metrics; `None` when no recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    pub ready: ReadinessCheck,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
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
