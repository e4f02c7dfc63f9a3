//! API authentication: `Authorization: Bearer <token>` against `[api] tokens`, each with a role. With no tokens
//! configured the API is open (and `ApiSettings` then refuses a non-loopback listen address unless told otherwise).
//!
//! Roles: `admin` may do anything; `write` may change jobs (and read); `read` may only read (`GET`, `HEAD`, and
//! the side-effect-free trigger preview).
//!
//! Each token has a name (`token-N` by position unless given); the name of the token a request presented reaches
//! the handlers as its `Actor`, which the audit trail records (`anonymous` when the API has no tokens). `/healthz`, `/readyz`, `/docs`, `/openapi.json` and the dashboard's static
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

/// A token's name is 1–64 of these, so the environment form can tell it from the token (see `parse_token_list`).
pub const MAX_TOKEN_NAME_LENGTH: usize = 64;

/// One of `[api] tokens`. The token is a secret (configuration is printed in errors and debug logs), so its Debug
/// output is redacted and it cannot be serialised.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who uses it, as the audit trail names them; `token-N` (N its position, from 1) when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The bearer token clients send.
    pub token: SecretString,
    /// What the token may do.
    pub role: Role,
}

impl ApiToken {
    /// A token without a name (it is named by its position).
    pub fn new(token: &str, role: Role) -> ApiToken {
        ApiToken { name: None, token: token.into(), role }
    }

    /// A token with a name.
    pub fn named(name: &str, token: &str, role: Role) -> ApiToken {
        ApiToken { name: Some(name.to_string()), ..ApiToken::new(token, role) }
    }
}

/// The name of the token at `index` (from 0) of the list: its own, or `token-N` with N counted from 1.
pub fn token_name(token: &ApiToken, index: usize) -> String {
    token.name.clone().unwrap_or_else(|| format!("token-{}", index + 1))
}

/// Who made a request: the name of the token it presented, or `anonymous` when the API has no tokens. The
/// authentication middleware puts it in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

/// `[{ name = "ci", token = "…", role = "admin" }, …]` in a file, or `token:role:name,token:role` in
/// `APSCHED_API_TOKENS`.
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

/// Entries are `token:role` or `token:role:name`. A token may itself contain colons and a name may not, so the last
/// field is the name unless it is a role; a name that is a role's word (`read`) cannot be given in this form.
fn parse_token_list(text: &str) -> Result<Vec<ApiToken>, String> {
    let malformed = || "each entry is token:role or token:role:name (role admin, write or read)".to_string();
    text.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let (rest, last) = entry.trim().rsplit_once(':').ok_or_else(malformed)?;
            if let Ok(role) = last.parse::<Role>() {
                return Ok(ApiToken { name: None, token: rest.into(), role });
            }
            let (token, role) = rest.rsplit_once(':').ok_or_else(malformed)?;
            Ok(ApiToken { name: Some(last.trim().to_string()), token: token.into(), role: role.parse()? })
        })
        .collect()
}

/// A name is 1–64 characters of `[A-Za-z0-9._@-]`: it shows in the audit and in its filters as it is.
fn validate_token_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_LENGTH {
        return Err(format!("must be 1–{MAX_TOKEN_NAME_LENGTH} characters"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'))) {
        return Err(format!("{bad:?} is not allowed; use A-Z, a-z, 0-9, '.', '_', '@' and '-'"));
    }
    Ok(())
}

pub(crate) fn validate_tokens(tokens: &[ApiToken]) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for (i, token) in tokens.iter().enumerate() {
        let name = token_name(token, i);
        if let Some(given) = &token.name {
            validate_token_name(given).map_err(|message| format!("token {i}: name {given:?} {message}"))?;
        }
        if !names.insert(name.clone()) {
            return Err(format!("token {i}: the name {name:?} is taken by another token; names tell tokens apart"));
        }
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
    /// Each token with its name.
    tokens: Vec<(ApiToken, String)>,
    metrics_public: bool,
}

impl Auth {
    pub fn new(settings: &ApiSettings) -> Arc<Auth> {
        let tokens = settings
            .tokens
            .iter()
            .enumerate()
            .map(|(index, token)| (token.clone(), token_name(token, index)))
            .collect();
        Arc::new(Auth { tokens, metrics_public: settings.metrics_public })
    }

    /// The role and name of a presented token (the highest role's, if it is configured twice). Every configured
    /// token is compared, each in time that depends only on the configured token's length, so timing tells an
    /// attacker neither which bytes matched nor which token.
    fn role_of(&self, presented: &[u8]) -> Option<(Role, &str)> {
        let mut found: Option<(Role, &str)> = None;
        for (configured, name) in &self.tokens {
            let expected = configured.token.expose_secret().as_bytes();
            let mut padded = vec![0u8; expected.len()];
            let common = presented.len().min(expected.len());
            padded[..common].copy_from_slice(&presented[..common]);
            let same = padded.ct_eq(expected) & (presented.len() as u64).ct_eq(&(expected.len() as u64));
            if bool::from(same) && found.is_none_or(|(role, _)| configured.role > role) {
                found = Some((configured.role, name.as_str()));
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
        // Cancelling a backfill is a change to a job's deliveries.
        _ if path.starts_with("/v1/backfills/") => Some(Role::Write),
        // A calendar change moves the next run times of the jobs that use it: a change to jobs.
        _ if path == "/v1/calendars" || path.starts_with("/v1/calendars/") => Some(Role::Write),
        _ => Some(Role::Admin),
    }
}

pub(crate) async fn authenticate(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    if auth.tokens.is_empty() {
        request.extensions_mut().insert(Actor(crate::audit::ANONYMOUS.to_string()));
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
        Some((role, _)) if role < needed => problem(
            StatusCode::FORBIDDEN,
            format!("this token's role ({role:?}) may not do this; it needs {needed:?}").to_lowercase(),
        ),
        Some((_, name)) => {
            let actor = Actor(name.to_string());
            request.extensions_mut().insert(actor);
            next.run(request).await
        }
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
        assert_eq!((tokens[0].name.as_deref(), tokens[1].name.as_deref()), (None, None));
        assert!(parse_token_list("nocolon").is_err());
        assert!(parse_token_list("abc:root").is_err());
    }

    #[test]
    fn the_environment_form_takes_a_name_after_the_role() {
        let tokens = parse_token_list("cccccccccccccccc:write:ci, d:d:dddddddddddddd:read:ops,e:read:admin").unwrap();
        assert_eq!(tokens[0].token.expose_secret(), "cccccccccccccccc");
        assert_eq!((tokens[0].role, tokens[0].name.as_deref()), (Role::Write, Some("ci")));
        assert_eq!(tokens[1].token.expose_secret(), "d:d:dddddddddddddd");
        assert_eq!((tokens[1].role, tokens[1].name.as_deref()), (Role::Read, Some("ops")));
        // A last field that is a role is the role: the token is everything before it.
        assert_eq!(tokens[2].token.expose_secret(), "e:read");
        assert_eq!((tokens[2].role, tokens[2].name.as_deref()), (Role::Admin, None));
        assert!(parse_token_list("abc:ci").is_err());
        assert!(parse_token_list("abc:root:ci").is_err());
    }

    #[test]
    fn tokens_are_named_by_position_unless_named_and_names_are_unique() {
        let tokens =
            vec![ApiToken::new("0123456789abcdef", Role::Read), ApiToken::named("ci", "fedcba9876543210", Role::Write)];
        assert_eq!(token_name(&tokens[0], 0), "token-1");
        assert_eq!(token_name(&tokens[1], 1), "ci");
        assert_eq!(validate_tokens(&tokens), Ok(()));
        let clash = vec![ApiToken::named("token-2", "0123456789abcdef", Role::Read), tokens[0].clone()];
        assert!(validate_tokens(&clash).unwrap_err().contains("\"token-2\" is taken"));
        let bad = vec![ApiToken::named("c i", "0123456789abcdef", Role::Read)];
        assert!(validate_tokens(&bad).unwrap_err().starts_with("token 0: name \"c i\""));
        let empty = vec![ApiToken::named("", "0123456789abcdef", Role::Read)];
        assert!(validate_tokens(&empty).is_err());
    }

    #[test]
    fn a_token_is_matched_exactly_and_the_highest_role_wins() {
        let auth = Auth {
            tokens: vec![
                (ApiToken::new("0123456789abcdef", Role::Read), "reader".to_string()),
                (ApiToken::new("0123456789abcdef", Role::Write), "writer".to_string()),
            ],
            metrics_public: false,
        };
        assert_eq!(auth.role_of(b"0123456789abcdef"), Some((Role::Write, "writer")));
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
        assert_eq!(required_role(&Method::GET, "/v1/audit", false), Some(Role::Read));
        assert_eq!(required_role(&Method::GET, "/v1/jobs/x/history", false), Some(Role::Read));
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
