//! The webhook call: one HTTP request per attempt, with apsched's delivery headers and, where a signing key is
//! configured, the Standard Webhooks headers. Any 2xx is success.

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use crate::action::HttpAction;
use crate::action::signing::SigningKey;

/// A run keeps the first 1 KiB of the response body.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;
/// Errors are stored and shown; a bound keeps a pathological message from bloating the ledger.
const MAX_ERROR_CHARS: usize = 500;

/// The headers every delivery carries besides the action's own.
pub struct DeliveryHeaders<'a> {
    /// `apsched-job-id`.
    pub job_id: &'a str,
    /// RFC 3339 in the job's zone.
    pub scheduled_time: &'a str,
    /// `idempotency-key`, and `webhook-id` when signed.
    pub idempotency_key: &'a str,
    /// Sign with this key; `webhook-timestamp` is `timestamp` (unix seconds of the attempt).
    pub signing: Option<(&'a SigningKey, i64)>,
    /// The run is a backfill's: `apsched-backfill: true`.
    pub backfill: bool,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// A 2xx answer, read in full as far as the excerpt goes.
    pub succeeded: bool,
    /// The answer's status; `None` when none came.
    pub http_status: Option<u16>,
    /// What went wrong: `HTTP <status>`, or the transport failure.
    pub error: Option<String>,
    /// The start of the response body (`RESPONSE_EXCERPT_BYTES`).
    pub response_excerpt: Option<String>,
    /// From sending the request to the end of the excerpt, or to the failure.
    pub duration: Duration,
    /// No complete answer: the connection failed, the call timed out, or the response body was cut short.
    pub transport_failed: bool,
    /// The response's `Retry-After`, verbatim (read against the scheduler's clock by the caller).
    pub retry_after: Option<String>,
}

impl Attempt {
    /// An attempt that was not made (the target is not allowed): failed, and not worth retrying.
    pub fn refused(error: String) -> Attempt {
        Attempt {
            succeeded: false,
            http_status: None,
            error: Some(error),
            response_excerpt: None,
            duration: Duration::ZERO,
            transport_failed: false,
            retry_after: None,
        }
    }
}

/// The client all deliveries share: one connection pool, no redirects (a redirect could lead a webhook to a
/// target its job was never allowed to name), names resolved through the target policy, and no proxy (a proxy
/// would resolve the target itself, out of the policy's sight).
pub fn client(policy: std::sync::Arc<super::policy::TargetPolicy>) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(super::policy::PolicyResolver::new(policy))
        .user_agent(concat!("apsched/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with static settings builds")
}

/// Make one attempt of the call to `url`, the action's URL as parsed for the target policy.
pub async fn attempt(
    client: &reqwest::Client,
    action: &HttpAction,
    url: reqwest::Url,
    delivery: &DeliveryHeaders<'_>,
) -> Attempt {
    let started = Instant::now();
    let mut headers = HeaderMap::new();
    for (name, value) in &action.headers {
        // Validated when the job was saved; a header that no longer parses is left out rather than failing.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(name, value);
        }
    }
    for (name, value) in [
        ("apsched-job-id", delivery.job_id),
        ("apsched-scheduled-time", delivery.scheduled_time),
        ("idempotency-key", delivery.idempotency_key),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if delivery.backfill {
        headers.insert(HeaderName::from_static("apsched-backfill"), HeaderValue::from_static("true"));
    }
    // The body as bytes first: a signature covers exactly what is sent.
    let body: Vec<u8> = if let Some(json) = &action.json {
        headers.entry(CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
        serde_json::to_vec(json).unwrap_or_default()
    } else {
        action.body.as_deref().unwrap_or_default().as_bytes().to_vec()
    };
    if let Some((key, timestamp)) = delivery.signing {
        let signature = key.sign(delivery.idempotency_key, timestamp, &body);
        for (name, value) in [
            ("webhook-id", delivery.idempotency_key.to_string()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    let mut request = client.request(action.method.as_reqwest(), url).timeout(action.timeout());
    if action.json.is_some() || action.body.is_some() {
        request = request.body(body);
    }
    let result = request.headers(headers).send().await;
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            return Attempt {
                succeeded: false,
                http_status: None,
                error: Some(describe(&err)),
                response_excerpt: None,
                duration: started.elapsed(),
                transport_failed: true,
                retry_after: None,
            };
        }
    };
    let status = response.status();
    let retry_after =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|value| value.to_str().ok()).map(str::to_string);
    let mut excerpt = Vec::new();
    let mut error = None;
    // Read only as much of the body as the ledger keeps; the rest is dropped with the connection.
    while excerpt.len() < RESPONSE_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(err) => {
                error = Some(describe(&err));
                break;
            }
        }
    }
    excerpt.truncate(RESPONSE_EXCERPT_BYTES);
    let transport_failed = error.is_some();
    let succeeded = status.is_success() && !transport_failed;
    if !status.is_success() {
        error = Some(format!("HTTP {}", status.as_u16()));
    }
    Attempt {
        succeeded,
        http_status: Some(status.as_u16()),
        error,
        response_excerpt: (!excerpt.is_empty()).then(|| String::from_utf8_lossy(&excerpt).into_owned()),
        duration: started.elapsed(),
        transport_failed,
        retry_after,
    }
}

fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    // reqwest's Display of a nested error omits the cause; the source chain says what actually happened.
    let mut message = format!("{kind}: {err}");
    if let Some(url) = err.url() {
        message = message.replace(url.as_str(), &crate::action::masked_url(url.as_str()));
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message.chars().take(MAX_ERROR_CHARS).collect()
}
