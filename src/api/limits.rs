//! API limits beyond the body size (`MAX_BODY_BYTES`) and the field bounds checked where fields are parsed: a time
//! limit on every request (`[api] request_timeout_seconds`). The cap on the jobs one store may hold is the
//! scheduler's (`scheduler::capacity`).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Waits for deliveries by design (`{"wait": true}`), and cutting it short would leave the scheduler stopped with
/// the server still up.
const UNTIMED_PATHS: [&str; 1] = ["/v1/scheduler/shutdown"];

/// A request not answered within the limit is answered 503 (the work it started is dropped with it). The limit
/// covers producing the response head, so a long-lived stream (server-sent events) is not cut off.
pub async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    if UNTIMED_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit = ?limit, "request timed out");
            ApiError::Unavailable(format!("the request took longer than {limit:?}; retry later")).into_response()
        }
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
