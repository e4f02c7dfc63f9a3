//! The HTTP side of the CLI: one request to the REST API, and what the user sees when it fails. Every command of
//! the client goes through `Client::send`, so the CLI can do nothing the public API cannot.

use std::time::Duration;

use serde_json::Value;

/// Where a client looks for the server when neither `--server` nor `APSCHED_URL` says: `apsched serve`'s default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// A server that does not accept a connection by then is not there; fail fast rather than hang a script.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longer than the server's own shutdown grace (30 s), so `scheduler shutdown` can wait for deliveries.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit codes, documented in the README: scripts can tell "you asked for something wrong" from "the server said
/// no" from "the server is down".
pub const EXIT_API_REFUSED: u8 = 1;
/// The same code clap uses for a bad command line.
pub const EXIT_USAGE: u8 = 2;
/// The server failed (5xx) or could not be reached.
pub const EXIT_SERVER: u8 = 3;
/// The request was taken but what it started failed (a followed backfill with failed fires).
pub const EXIT_FAILED: u8 = 4;

/// Why a client command failed; each kind has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line or an input file is wrong; nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// The API refused the request (4xx): its problem detail, which names the field at fault.
    #[error("{detail} (HTTP {status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem's `detail`.
        detail: String,
        /// The problem's `field`: the input at fault.
        field: Option<String>,
    },
    /// 5xx, no answer, or an answer that is not the API's.
    #[error("{0}")]
    Server(String),
    /// What the command started and followed failed.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code for this failure (`EXIT_*`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Refused { .. } => EXIT_API_REFUSED,
            CliError::Server(_) => EXIT_SERVER,
            CliError::Failed(_) => EXIT_FAILED,
        }
    }

    /// A usage error: the command line or an input file is wrong.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }
}

pub(crate) struct Client {
    base: String,
    token: Option<String>,
    /// Sent as `apsched-reason` with every request (the audit records it with a change).
    reason: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Result<Client, CliError> {
        let base = server.trim_end_matches('/').to_string();
        match reqwest::Url::parse(&base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => return Err(CliError::usage(format!("server URL {server:?} is not an http or https URL"))),
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("apsched-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| CliError::Server(format!("cannot set up HTTP: {err}")))?;
        Ok(Client { base, token: token.filter(|t| !t.is_empty()), reason: None, http })
    }

    /// Say why, with every change this client makes.
    pub fn with_reason(mut self, reason: Option<String>) -> Client {
        self.reason = reason.filter(|reason| !reason.trim().is_empty());
        self
    }

    /// Send one request to `/v1{path}`; a 2xx answer's JSON body (null when empty), or the error to show.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let url = format!("{}/v1{path}", self.base);
        let mut request = self.http.request(method, &url).header("accept", "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(reason) = &self.reason {
            request = request.header(crate::api::REASON_HEADER, reason);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| {
            CliError::Server(format!(
                "cannot reach apsched at {}: {} (set --server or APSCHED_URL)",
                self.base,
                error_chain(&err)
            ))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| CliError::Server(format!("the answer from {url} broke off: {}", error_chain(&err))))?;
        let json: Option<Value> =
            if text.trim().is_empty() { Some(Value::Null) } else { serde_json::from_str(&text).ok() };
        if status.is_success() {
            return json
                .ok_or_else(|| CliError::Server(format!("{url} answered {status} with a body that is not JSON")));
        }
        let detail = json
            .as_ref()
            .and_then(|problem| problem.get("detail").or_else(|| problem.get("title")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        let field = json.as_ref().and_then(|problem| problem["field"].as_str()).map(str::to_string);
        if status.is_client_error() {
            let detail = match status.as_u16() {
                401 | 403 => format!("{detail}; give a token with --token or APSCHED_TOKEN"),
                _ => detail,
            };
            Err(CliError::Refused { status: status.as_u16(), detail, field })
        } else {
            Err(CliError::Server(format!("the server failed: {detail} (HTTP {})", status.as_u16())))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        self.send(reqwest::Method::POST, path, body).await
    }
}

/// reqwest's top-level message hides the cause ("error sending request"); the chain says "connection refused".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// A job id as one path segment: ids the API accepts need no escaping, and anything else must not reach another
/// route (`a/../b`), so every other byte is percent-encoded and the API answers 404 for it.
pub fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' | b':' => (b as char).to_string(),
            // A lone "." or ".." would be a relative path segment; escape dots too.
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_ids_and_escape_the_rest() {
        assert_eq!(segment("nightly-report:eu_1"), "nightly-report:eu_1");
        assert_eq!(segment("a/../b"), "a%2F%2E%2E%2Fb");
        assert_eq!(segment("x y?"), "x%20y%3F");
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            CliError::usage("x").exit_code(),
            CliError::Refused { status: 404, detail: "x".into(), field: None }.exit_code(),
            CliError::Server("x".into()).exit_code(),
        ];
        assert_eq!(codes, [EXIT_USAGE, EXIT_API_REFUSED, EXIT_SERVER]);
    }
}
