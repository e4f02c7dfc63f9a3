//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Whether the server is live or ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `ready`, or what is not ready.
    pub status: String,
}

/// Liveness: the process answers
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".to_string() })
}

/// Readiness: every job store answers
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Every job store answers", body = Health),
        (status = 503, description = "A job store does not answer; `status` names it", body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    for (name, store) in state.scheduler.stores() {
        if let Err(err) = store.ping().await {
            tracing::warn!(store = %name, error = %err, "not ready");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health { status: format!("job store {name:?} unavailable") }),
            );
        }
    }
    (StatusCode::OK, Json(Health { status: "ready".to_string() }))
}
