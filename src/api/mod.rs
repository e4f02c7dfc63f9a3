//! The REST API: state, router, OpenAPI document, and the extractors that turn bad input into
//! problem+json. Handlers are thin: extract, validate, call the scheduler or a store, convert.

mod audit;
pub mod auth;
pub mod backfills;
mod calendars;
mod events;
mod examples;
mod health;
mod jobs;
mod limits;
mod links;
mod metrics;
mod notifications;
mod scheduler;
mod schema_rules;
pub mod settings;
mod trigger_schema;
mod triggers;

pub use audit::REASON_HEADER;
pub use jobs::job_view;
pub use settings::ApiSettings;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::scheduler::Scheduler;

/// A body over 1 MiB is 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The scheduler the API drives.
    pub scheduler: Arc<Scheduler>,
    /// The API's own settings (listen address, tokens, limits).
    pub api: Arc<ApiSettings>,
    /// Cancelled to stop the HTTP server (after `POST /v1/scheduler/shutdown` has answered).
    pub server_shutdown: CancellationToken,
    /// Cancelled once the scheduler has shut down, to end event streams after they carried `scheduler_shutdown`.
    pub streams_stop: CancellationToken,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "apsched",
        description = "APScheduler's model as an HTTP service: jobs with triggers whose action is a webhook call."
    ),
    tags(
        (name = "jobs", description = "Add, inspect, change and remove jobs"),
        (name = "triggers", description = "Preview fire times"),
        (name = "calendars", description = "Named exclusions any trigger can use"),
        (name = "scheduler", description = "Scheduler state and control"),
        (name = "audit", description = "Who changed what: every change made through the API"),
        (name = "events", description = "The scheduler's events, streamed as server-sent events"),
        (name = "health", description = "Liveness, readiness and metrics")
    )
)]
struct ApiDoc;

/// Every API route with its OpenAPI operation; one source, so routes and spec cannot drift.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(jobs::add_job, jobs::list_jobs, jobs::remove_all_jobs, jobs::modify_jobs))
        .routes(routes!(jobs::get_job, jobs::modify_job, jobs::remove_job))
        .routes(routes!(jobs::pause_job))
        .routes(routes!(jobs::resume_job))
        .routes(routes!(jobs::run_job))
        .routes(routes!(jobs::list_runs))
        .routes(routes!(audit::job_history))
        .routes(routes!(notifications::list_notifications))
        .routes(routes!(audit::list_audit))
        .routes(routes!(triggers::preview))
        .routes(routes!(calendars::list_calendars))
        .routes(routes!(calendars::put_calendar, calendars::get_calendar, calendars::remove_calendar))
        .routes(routes!(calendars::check_calendar))
        .routes(routes!(scheduler::get_scheduler))
        .routes(routes!(scheduler::pause_scheduler))
        .routes(routes!(scheduler::resume_scheduler))
        .routes(routes!(events::stream_events))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(backfills::start_backfill))
        .routes(routes!(backfills::get_backfill, backfills::cancel_backfill))
        .routes(routes!(backfills::list_backfills))
}

/// API routes the request time limit does not cover: shutdown waits for deliveries by design (`{"wait": true}`),
/// and cutting it short would leave the scheduler stopped with the server still up.
fn untimed_api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scheduler::shutdown_scheduler))
}

/// The OpenAPI document (served at `/openapi.json`, written to `openapi/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes_and_spec().2
}

/// The timed API routes, the untimed ones, and the spec of both.
fn routes_and_spec() -> (Router<AppState>, Router<AppState>, utoipa::openapi::OpenApi) {
    let (timed, mut spec) = api_routes().split_for_parts();
    let (untimed, untimed_spec) = untimed_api_routes().split_for_parts();
    spec.merge(untimed_spec);
    auth::document(&mut spec);
    audit::document(&mut spec);
    limits::document(&mut spec);
    links::document(&mut spec);
    examples::document(&mut spec);
    trigger_schema::document(&mut spec);
    schema_rules::document(&mut spec);
    jobs::document_selectors(&mut spec);
    (timed, untimed, spec)
}

/// The whole HTTP application: API, `/openapi.json` and the bundled docs at `/docs`.
pub fn app(state: AppState) -> Router {
    let (timed, untimed, spec) = routes_and_spec();
    let auth = auth::Auth::new(&state.api);
    let limit = state.api.request_timeout();
    timed
        .with_state(state.clone())
        .merge(crate::ui::router())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(|| async { ApiError::NotFound("no such route".to_string()) })
        // The limit covers producing the response head, so a long-lived stream (server-sent events) is not cut off.
        .layer(
            ServiceBuilder::new().layer(HandleErrorLayer::new(move |err| limits::timed_out(limit, err))).timeout(limit),
        )
        .merge(untimed.with_state(state))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost last: a span per request, then authentication, then the clock on what remains. A failure is
        // not logged again here: `ApiError` logs a 5xx once, with its cause.
        .layer(axum::middleware::from_fn_with_state(auth, auth::authenticate))
        .layer(TraceLayer::new_for_http().on_failure(()))
}

/// A JSON body: malformed JSON is 400, a body of the wrong shape 422 naming the field, too large 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json(&read_body(request, state).await?).map(ApiJson)
    }
}

/// Like `ApiJson`, but an empty body means `T::default()`. A body, when sent, is an object as the spec says: `null`
/// is refused like any other non-object.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = read_body(request, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if body.trim_ascii() == b"null" {
            return Err(ApiError::invalid("body", "must be a JSON object, or left out"));
        }
        parse_json(&body).map(OptionalJson)
    }
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_BODY_BYTES)
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// Parse JSON with the path of the offending field in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object; serde would also read a struct from an array of its fields in order.
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::invalid("body", "must be a JSON object, not an array"));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax
            | serde_json::error::Category::Eof
            | serde_json::error::Category::Io => ApiError::BadRequest(format!("malformed JSON: {inner}")),
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                let detail = crate::trigger::split_nested_path(&message).1;
                ApiError::invalid(field_of(&path, &message), detail)
            }
        }
    })?;
    Ok(value)
}

/// The field a data error is about: serde's path, plus the field a "missing/unknown field `x`" message names.
fn field_of(path: &str, message: &str) -> String {
    // A trigger's error carries the path inside the trigger in its message (see `trigger::split_nested_path`).
    let (nested, message) = crate::trigger::split_nested_path(message);
    let path = match nested {
        Some(nested) if path == "." => nested.to_string(),
        Some(nested) => format!("{path}.{nested}"),
        None => path.to_string(),
    };
    let path = path.as_str();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(name)) => name.to_string(),
        (".", None) => "body".to_string(),
        (path, Some(name)) if path.rsplit('.').next() != Some(name) => format!("{path}.{name}"),
        (path, _) => path.to_string(),
    }
}

/// A query string: a parameter of the wrong type or unknown is 400 naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|err| ApiError::BadRequest(format!("query string: {err}")))
    }
}
