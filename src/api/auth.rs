//! API authentication: `Authorization: Bearer <token>` against `[api] tokens`, each with a role. With no tokens
//! configured the API is open (and `ApiSettings` then refuses a non-loopback listen address unless told otherwise).
//!
//! Roles: `admin` may do anything; `write` may change jobs (and read); `read` may only read (`GET`, `HEAD`, and
//! the side-effect-free trigger preview). `/healthz`, `/readyz`, `/docs`, `/openapi.json` and the dashboard's static
//! files (`/`, `/ui/…`) are always open: they hold no data. `/metrics` is open when `[api] metrics_public`, otherwise it needs `read`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use subtle::ConstantTimeEq;

use super::ApiSettings;
use crate::error::Problem;

/// A token shorter than this could be guessed by brute force over the network.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// What a token may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read jobs, runs, the scheduler, events and metrics; preview triggers.
    Read,
    /// Also add, change, pause, resume, run and remove jobs.
    Write,
    /// Also pause, resume and shut down the scheduler.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        match text.trim() {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(format!("{other:?} is not a role (admin, write, read)")),
        }
    }
}

/// One of `[api] tokens`. The token is a secret (configuration is printed in errors and debug logs), so its Debug
/// output is redacted and it cannot be serialised.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// The bearer token clients send.
    pub token: SecretString,
    /// What the token may do.
    pub role: Role,
}

/// `[{ token = "…", role = "admin" }, …]` in a file, or `token:role,token:role` in `APSCHED_API_TOKENS`.
pub fn deserialize_tokens<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ApiToken>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tokens {
        List(Vec<ApiToken>),
        Text(String),
    }
    match Tokens::deserialize(deserializer)? {
        Tokens::List(list) => Ok(list),
        Tokens::Text(text) => parse_token_list(&text).map_err(serde::de::Error::custom),
    }
}

fn parse_token_list(text: &str) -> Result<Vec<ApiToken>, String> {
    text.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            // The role is after the last colon, so a token may itself contain colons.
            let (token, role) = entry
                .trim()
                .rsplit_once(':')
                .ok_or_else(|| "each entry is token:role (role admin, write or read)".to_string())?;
            Ok(ApiToken { token: token.into(), role: role.parse()? })
        })
        .collect()
}

pub(crate) fn validate_tokens(tokens: &[ApiToken]) -> Result<(), String> {
    for (i, token) in tokens.iter().enumerate() {
        let token = token.token.expose_secret();
        if token.chars().count() < MIN_TOKEN_LENGTH {
            return Err(format!("token {i} is shorter than {MIN_TOKEN_LENGTH} characters"));
        }
        if HeaderValue::from_str(token).is_err() || token.contains(char::is_whitespace) {
            return Err(format!("token {i} has characters a header value cannot carry"));
        }
    }
    Ok(())
}

/// What the middleware needs, fixed at start-up.
pub(crate) struct Auth {
    tokens: Vec<ApiToken>,
    metrics_public: bool,
}

impl Auth {
    pub fn new(settings: &ApiSettings) -> Arc<Auth> {
        Arc::new(Auth { tokens: settings.tokens.clone(), metrics_public: settings.metrics_public })
    }

    /// The role of a presented token. Every configured token is compared, each in time that depends only on the
    /// configured token's length, so timing tells an attacker neither which bytes matched nor which token.
    fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for configured in &self.tokens {
            let expected = configured.token.expose_secret().as_bytes();
            let mut padded = vec![0u8; expected.len()];
            let common = presented.len().min(expected.len());
            padded[..common].copy_from_slice(&presented[..common]);
            let same = padded.ct_eq(expected) & (presented.len() as u64).ct_eq(&(expected.len() as u64));
            if bool::from(same) {
                found = found.max(Some(configured.role));
            }
        }
        found
    }
}

/// The role a request needs; `None`: open to all.
pub fn required_role(method: &Method, path: &str, metrics_public: bool) -> Option<Role> {
    let reading = matches!(*method, Method::GET | Method::HEAD);
    match path {
        "/healthz" | "/readyz" | "/openapi.json" => None,
        _ if path == "/docs" || path.starts_with("/docs/") => None,
        // The dashboard's static files hold no data; the page sends the token with each API call it makes.
        "/" => None,
        _ if path == "/ui" || path.starts_with("/ui/") => None,
        "/metrics" if metrics_public => None,
        _ if reading => Some(Role::Read),
        // Computes fire times and changes nothing.
        "/v1/triggers/preview" => Some(Role::Read),
        _ if path.starts_with("/v1/calendars/") && path.ends_with("/check") => Some(Role::Read),
        _ if path == "/v1/jobs" || path.starts_with("/v1/jobs/") => Some(Role::Write),
        // A calendar change moves the next run times of the jobs that use it: a change to jobs.
        _ if path == "/v1/calendars" || path.starts_with("/v1/calendars/") => Some(Role::Write),
        _ => Some(Role::Admin),
    }
}

pub(crate) async fn authenticate(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    if auth.tokens.is_empty() {
        return next.run(request).await;
    }
    let Some(needed) = required_role(request.method(), request.uri().path(), auth.metrics_public) else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return unauthorized("an `Authorization: Bearer <token>` header is required");
    };
    match auth.role_of(presented.as_bytes()) {
        None => unauthorized("the bearer token is not valid"),
        Some(role) if role < needed => problem(
            StatusCode::FORBIDDEN,
            format!("this token's role ({role:?}) may not do this; it needs {needed:?}").to_lowercase(),
        ),
        Some(_) => next.run(request).await,
    }
}

fn unauthorized(detail: &str) -> Response {
    let mut response = problem(StatusCode::UNAUTHORIZED, detail.to_string());
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"apsched\""));
    response
}

fn problem(status: StatusCode, detail: String) -> Response {
    let body = Problem {
        problem_type: "about:blank".to_string(),
        title: status.canonical_reason().unwrap_or("Error").to_string(),
        status: status.as_u16(),
        detail,
        field: None,
    };
    (status, [(header::CONTENT_TYPE, "application/problem+json")], serde_json::to_vec(&body).unwrap_or_default())
        .into_response()
}

/// Describe the bearer scheme in the spec: every operation takes it (when tokens are configured) and may answer
/// 401 or 403, except the open ones, which may be called anonymously.
pub fn document(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};

    spec.components.get_or_insert_with(Default::default).add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "`[api] tokens`; roles admin (all), write (jobs and calendars), read (GET, trigger preview and \
                     calendar checks). \
             Not needed when no tokens are configured.",
                ))
                .build(),
        ),
    );
    for (path, item) in spec.paths.paths.iter_mut() {
        for (method, operation) in [
            (Method::GET, &mut item.get),
            (Method::PUT, &mut item.put),
            (Method::POST, &mut item.post),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ] {
            let Some(operation) = operation else { continue };
            if required_role(&method, path, false).is_none() {
                operation.security = Some(vec![SecurityRequirement::default()]);
                continue;
            }
            operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
            let responses = &mut operation.responses.responses;
            responses.insert("401".to_string(), Problem::openapi_response("No or an unknown bearer token").into());
            responses.insert("403".to_string(), Problem::openapi_response("The token's role may not do this").into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lists_parse_from_the_environment_form() {
        let tokens = parse_token_list("aaaaaaaaaaaaaaaa:admin, b:b:bbbbbbbbbbbbbb:read,").unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].role, Role::Admin);
        assert_eq!(tokens[1].token.expose_secret(), "b:b:bbbbbbbbbbbbbb");
        assert_eq!(tokens[1].role, Role::Read);
        assert!(parse_token_list("nocolon").is_err());
        assert!(parse_token_list("abc:root").is_err());
    }

    #[test]
    fn a_token_is_matched_exactly_and_the_highest_role_wins() {
        let auth = Auth {
            tokens: vec![
                ApiToken { token: "0123456789abcdef".into(), role: Role::Read },
                ApiToken { token: "0123456789abcdef".into(), role: Role::Write },
            ],
            metrics_public: false,
        };
        assert_eq!(auth.role_of(b"0123456789abcdef"), Some(Role::Write));
        assert_eq!(auth.role_of(b"0123456789abcde"), None);
        assert_eq!(auth.role_of(b"0123456789abcdef0"), None);
        assert_eq!(auth.role_of(b""), None);
    }

    #[test]
    fn routes_need_the_roles_the_design_gives_them() {
        assert_eq!(required_role(&Method::GET, "/healthz", false), None);
        assert_eq!(required_role(&Method::GET, "/docs/index.html", false), None);
        assert_eq!(required_role(&Method::GET, "/ui/app.js", false), None);
        assert_eq!(required_role(&Method::GET, "/", false), None);
        assert_eq!(required_role(&Method::GET, "/metrics", true), None);
        assert_eq!(required_role(&Method::GET, "/metrics", false), Some(Role::Read));
        assert_eq!(required_role(&Method::GET, "/v1/jobs/x/runs", false), Some(Role::Read));
        assert_eq!(required_role(&Method::POST, "/v1/triggers/preview", false), Some(Role::Read));
        assert_eq!(required_role(&Method::POST, "/v1/jobs", false), Some(Role::Write));
        assert_eq!(required_role(&Method::DELETE, "/v1/jobs/x", false), Some(Role::Write));
        assert_eq!(required_role(&Method::POST, "/v1/scheduler/pause", false), Some(Role::Admin));
        assert_eq!(required_role(&Method::POST, "/v1/jobsX", false), Some(Role::Admin));
        assert_eq!(required_role(&Method::PUT, "/v1/calendars/x", false), Some(Role::Write));
        assert_eq!(required_role(&Method::DELETE, "/v1/calendars/x", false), Some(Role::Write));
        assert_eq!(required_role(&Method::POST, "/v1/calendars/x/check", false), Some(Role::Read));
        assert_eq!(required_role(&Method::GET, "/v1/calendars", false), Some(Role::Read));
    }
}
