//! Operability endpoints: `/healthz` (MongoDB and Temporal reachable) and Prometheus
//! `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use crate::AppState;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide metrics recorder once (later calls, e.g. from tests that build
/// several applications, reuse it).
pub fn install_metrics_recorder() {
    PROMETHEUS.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("no other metrics recorder is installed in this process")
    });
}

/// Health and metrics routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    mongodb: &'static str,
    temporal: &'static str,
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let deadline = Duration::from_secs(2);
    let mongo_ok = tokio::time::timeout(deadline, state.store.ping())
        .await
        .is_ok_and(|r| r.is_ok());
    let mut service = state.temporal.connection().workflow_service();
    let temporal_ok = tokio::time::timeout(
        deadline,
        service.get_system_info(temporalio_client::tonic::Request::new(Default::default())),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let up = |ok| if ok { "up" } else { "down" };
    let healthy = mongo_ok && temporal_ok;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if healthy { "ok" } else { "degraded" },
            mongodb: up(mongo_ok),
            temporal: up(temporal_ok),
        }),
    )
}

async fn metrics_text() -> impl IntoResponse {
    let body = PROMETHEUS
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
