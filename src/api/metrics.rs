//! `GET /metrics`: Prometheus text exposition of `crate::metrics`, with the gauges read now.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

use super::AppState;
use crate::metrics::Snapshot;

/// Prometheus metrics
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition (metrics prefixed apsched_)", body = String,
        content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let scheduler = &state.scheduler;
    let mut jobs = Vec::new();
    for (name, store) in scheduler.stores() {
        // A store that cannot answer is left out of the gauge rather than failing the whole scrape.
        match store.count_jobs().await {
            Ok(count) => jobs.push((name.clone(), count)),
            Err(err) => tracing::warn!(store = %name, error = %err, "cannot count jobs for /metrics"),
        }
    }
    let pools = scheduler.executors.status();
    let text = scheduler.metrics.render(&Snapshot { jobs: &jobs, pools: &pools });
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
