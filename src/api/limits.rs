//! API limits beyond the body size (`MAX_BODY_BYTES`) and the field bounds checked where fields are parsed: a time
//! limit on every request (tower's timeout layer, applied in `super::app`; this says what a timeout answers), and
//! a cap on the jobs one store may hold (`[api] request_timeout_seconds`, `max_jobs_per_store`).

use std::time::Duration;

use axum::BoxError;

use super::AppState;
use crate::error::{ApiError, Result};
use crate::store::JobStore;

/// What a request over `[api] request_timeout_seconds` is answered (tower's timeout layer says it elapsed; the
/// work the request started is dropped with it): 503, retry later.
pub async fn timed_out(limit: Duration, err: BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!(limit = ?limit, "request timed out");
        ApiError::Unavailable(format!("the request took longer than {limit:?}; retry later"))
    } else {
        ApiError::Internal(format!("request failed: {err}"))
    }
}

/// How long `check_store_capacity` trusts a store's job count before counting again. A count is a scan of the
/// store's jobs, which at a few thousand adds a second cost more than the adds themselves; within this time the
/// count goes up with every add this process makes (removals are not subtracted, which only errs towards counting).
const JOB_COUNT_TRUSTED_FOR: Duration = Duration::from_secs(1);

/// Each store's job count as last counted plus the adds since, and when it was counted.
#[derive(Default)]
pub struct JobCounts {
    by_store: std::sync::Mutex<std::collections::HashMap<String, (u64, std::time::Instant)>>,
}

impl JobCounts {
    /// Count one more job in `store` if the recent count leaves room for it below `limit` without counting again.
    fn take_room(&self, store: &str, limit: u64) -> bool {
        let mut by_store = self.by_store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match by_store.get_mut(store) {
            Some((count, counted_at))
                if counted_at.elapsed() < JOB_COUNT_TRUSTED_FOR && count.saturating_add(1) < limit =>
            {
                *count += 1;
                true
            }
            _ => false,
        }
    }

    fn counted(&self, store: &str, count: u64) {
        let mut by_store = self.by_store.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        by_store.insert(store.to_string(), (count, std::time::Instant::now()));
    }
}

/// Refuse a job that would grow a full store; replacing a job it already holds is fine. Concurrent adds may pass
/// the check together, so the bound can be exceeded by the requests in flight, and, with replicas sharing a store,
/// by what the others added within `JOB_COUNT_TRUSTED_FOR`.
pub async fn check_store_capacity(state: &AppState, store_name: &str, store: &dyn JobStore, id: &str) -> Result<()> {
    let limit = state.scheduler.config.api.max_jobs_per_store;
    if state.job_counts.take_room(store_name, limit) {
        return Ok(());
    }
    let count = store.count_jobs().await?;
    if count >= limit && store.get_job(id).await?.is_none() {
        return Err(ApiError::Conflict(format!(
            "the job store holds its maximum of {limit} jobs ([api] max_jobs_per_store); remove some first"
        )));
    }
    state.job_counts.counted(store_name, count.saturating_add(1));
    Ok(())
}

/// Responses every operation may give because of these limits: 503 when a request times out (or a store is
/// unreachable), 413 when a body is over `MAX_BODY_BYTES`.
pub fn document(spec: &mut utoipa::openapi::OpenApi) {
    for item in spec.paths.paths.values_mut() {
        for operation in
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            let responses = &mut operation.responses.responses;
            responses.entry("503".to_string()).or_insert_with(|| {
                crate::error::Problem::openapi_response(
                    "The request timed out or a job store is unreachable; retry later",
                )
                .into()
            });
            if operation.request_body.is_some() {
                responses.entry("413".to_string()).or_insert_with(|| {
                    crate::error::Problem::openapi_response("The request body is larger than 1 MiB").into()
                });
            }
        }
    }
}
