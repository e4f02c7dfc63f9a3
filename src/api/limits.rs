//! API limits beyond the body size (`MAX_BODY_BYTES`) and the field bounds checked where fields are parsed: a time
//! limit on every request (tower's timeout layer, applied in `super::app`; this says what a timeout answers). The
//! cap on the jobs one store may hold is the scheduler's (`scheduler::capacity`).

use std::time::Duration;

use axum::BoxError;

use crate::error::ApiError;

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
