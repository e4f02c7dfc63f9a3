//! `ApiError`: every failure a client sees, rendered as RFC 9457 `application/problem+json` with the field at
//! fault. Server-side causes are logged once here and never shown.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// A failed request, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON or query string.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but invalid: the field and what is wrong with it.
    #[error("{field}: {message}")]
    Invalid {
        /// The input at fault (`trigger.hour`, `action.url`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such job, route or resource.
    #[error("{0}")]
    NotFound(String),
    /// Clashes with the current state: the id is taken, a store is full.
    #[error("{0}")]
    Conflict(String),
    /// The body is over the limit (in bytes).
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A job store cannot be reached; the client may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A server fault; the cause is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

/// A handler's result.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// RFC 9457 problem details, plus `field` naming the offending input.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The input at fault (`trigger.hour`, `action.url`), on 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// An OpenAPI response with `description` whose body is a `Problem`, for responses added to every operation.
    pub fn openapi_response(description: &str) -> utoipa::openapi::Response {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
            )
            .build()
    }
}

impl ApiError {
    /// A 422 naming the input at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Invalid { field: field.into(), message: message.into() }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem+json body.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            problem_type: "about:blank".to_string(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            field: match self {
                ApiError::Invalid { field, .. } => Some(field.clone()),
                _ => None,
            },
        }
    }
}

impl From<crate::scheduler::Error> for ApiError {
    fn from(err: crate::scheduler::Error) -> Self {
        use crate::scheduler::Error;
        match err {
            Error::Invalid { field, message } => ApiError::Invalid { field, message },
            Error::NotFound(message) => ApiError::NotFound(message),
            Error::Conflict(message) => ApiError::Conflict(message),
            Error::Store(err) => err.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("not found".to_string()),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::Unavailable(message) => {
                tracing::warn!(error = %message, "job store unavailable");
                ApiError::Unavailable("the job store is unavailable; retry later".to_string())
            }
            StoreError::Corrupt(message) => ApiError::Internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}
