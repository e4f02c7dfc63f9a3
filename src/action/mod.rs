//! A job's action: what a fire does. `HttpAction` (a webhook call) is what API clients send; `FunctionAction`
//! names a Rust function registered with the library's scheduler. The ledger snapshots the action of each fire.
//! This module is the action as data and its rules: validation, masking, the retry policy (`retry`) and the
//! signing secret's format (`signing`). Making the call is the `delivery` component's.

pub mod retry;
pub mod signing;
pub mod template;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long a delivery may take when the action does not say.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 30.0;
/// A webhook that takes longer than this is a mistake, not a job; keeps a stuck target from holding a worker.
pub const MAX_TIMEOUT_SECONDS: f64 = 3600.0;
/// Bounds that keep one job's headers from bloating every delivery and every stored row.
pub const MAX_HEADERS: usize = 64;
/// Longest header name plus value.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// What a masked header value is shown as.
pub const MASK: &str = "********";

/// The tag of a webhook call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionType {
    /// `"http"`.
    #[default]
    Http,
}

/// The HTTP method of a webhook call (default `POST`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    #[default]
    Post,
    /// `PUT`.
    Put,
    /// `PATCH`.
    Patch,
    /// `DELETE`.
    Delete,
    /// `OPTIONS`.
    Options,
}

impl Method {
    /// The method as the HTTP client names it.
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
            Method::Options => reqwest::Method::OPTIONS,
        }
    }
}

/// What a job does when it fires: a webhook call, or a Rust function registered by name with the scheduler.
/// Serialised as the variant itself (`{"type": "http", "url": …}` or `{"type": "function", "function": …}`), so
/// stored webhook actions read back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Action {
    /// A webhook call.
    Http(HttpAction),
    /// A Rust function registered by name with the scheduler (when apsched is embedded as a library).
    Function(FunctionAction),
}

impl From<HttpAction> for Action {
    fn from(action: HttpAction) -> Action {
        Action::Http(action)
    }
}

impl Action {
    /// A function action calling the function registered as `name`.
    pub fn function(name: impl Into<String>) -> Action {
        Action::Function(FunctionAction { action_type: FunctionType::Function, function: name.into() })
    }

    /// The webhook call, if this is one.
    pub fn as_http(&self) -> Option<&HttpAction> {
        match self {
            Action::Http(action) => Some(action),
            Action::Function(_) => None,
        }
    }

    /// The action as shown to clients: a webhook's secrets masked; a function's name as it is.
    pub fn masked(&self) -> Action {
        match self {
            Action::Http(action) => Action::Http(action.masked()),
            Action::Function(function) => Action::Function(function.clone()),
        }
    }

    /// The retry policy of a webhook; functions are called once per fire, as APScheduler calls them.
    pub fn retry(&self) -> Option<&retry::RetryPolicy> {
        self.as_http().and_then(|action| action.retry.as_ref())
    }
}

/// The tag of a function action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionType {
    /// `"function"`.
    #[default]
    Function,
}

/// A call of a Rust function registered with the scheduler under `function`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionAction {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub action_type: FunctionType,
    /// The name the function was registered under.
    pub function: String,
}

/// A webhook call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpAction {
    /// `"http"`, the default.
    #[serde(rename = "type", default)]
    pub action_type: ActionType,
    /// The HTTP method (default `POST`).
    #[serde(default)]
    pub method: Method,
    /// Absolute `http` or `https` URL.
    #[schema(format = "uri", pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@]", min_length = 1, max_length = 8192)]
    pub url: String,
    /// Headers sent with each call, besides the delivery and signature headers. The values of `Authorization`,
    /// `Proxy-Authorization`, `Cookie` and any header whose name contains `token`, `secret`, `key`, `password` or
    /// `signature` are shown masked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A text body; exclusive with `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// A JSON body, sent with `content-type: application/json`; exclusive with `body`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<serde_json::Value>)]
    pub json: Option<serde_json::Value>,
    /// Seconds before the call is abandoned (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, maximum = 3600)]
    pub timeout_seconds: Option<f64>,
    /// Try again on connection errors, timeouts, 408, 429 and 5xx; absent: one attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<retry::RetryPolicy>,
    /// A Standard Webhooks secret (`whsec_` + base64 of 24–64 bytes) for this job, used instead of
    /// `[webhooks] signing_secret`. Shown masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// Render `url`, header values, `body` and the string values of `json` as minijinja templates before each
    /// attempt, with `job.id`, `job.name`, `job.labels`, `scheduled_time`, `scheduled_timestamp`, `attempt`,
    /// `idempotency_key` and `run.kind`. Off: everything is sent as written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template: bool,
}

impl HttpAction {
    /// `timeout_seconds`, or the default when absent.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS))
    }

    /// Check what serde cannot: the URL, header names and values, exclusive bodies, bounds.
    /// The error is (field inside the action, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        if self.url.len() > MAX_URL_BYTES {
            return fail("url", format!("is longer than {MAX_URL_BYTES} bytes"));
        }
        if self.template {
            template::check(self)?;
        }
        // A templated URL is checked as it renders for a sample fire: its scheme and host must be there already.
        let url = if self.template { template::sample_url(self) } else { Ok(self.url.clone()) };
        url.and_then(|url| check_absolute_http(&url)).map_err(|message| ("url".to_string(), message))?;
        if self.headers.len() > MAX_HEADERS {
            return fail("headers", format!("{} headers; at most {MAX_HEADERS}", self.headers.len()));
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return fail("headers", format!("{name:?} is not a valid header name"));
            }
            if name.len() + value.len() > MAX_HEADER_BYTES {
                return fail("headers", format!("{name:?} is longer than {MAX_HEADER_BYTES} bytes"));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return fail("headers", format!("the value of {name:?} is not a valid header value"));
            }
        }
        if self.body.is_some() && self.json.is_some() {
            return fail("json", "give either `body` or `json`, not both".to_string());
        }
        if let Some(timeout) = self.timeout_seconds
            && !(timeout > 0.0 && timeout <= MAX_TIMEOUT_SECONDS)
        {
            return fail("timeout_seconds", format!("{timeout} is out of range (0, {MAX_TIMEOUT_SECONDS}]"));
        }
        if let Some(policy) = &self.retry {
            policy.validate().map_err(|(field, message)| (format!("retry.{field}"), message))?;
        }
        if let Some(secret) = &self.signing_secret {
            signing::SigningKey::parse(secret).map_err(|message| ("signing_secret".to_string(), message))?;
        }
        Ok(())
    }

    /// The action as shown to clients: secret-looking header values masked, and the URL's as `masked_url` says.
    pub fn masked(&self) -> HttpAction {
        let mut shown = self.clone();
        shown.url = masked_url(&self.url);
        for (name, value) in shown.headers.iter_mut() {
            if is_secret_header(name) {
                *value = MASK.to_string();
            }
        }
        if shown.signing_secret.is_some() {
            shown.signing_secret = Some(MASK.to_string());
        }
        shown
    }
}

impl HttpAction {
    /// Put back the secrets a client sent as it was shown them (`********`, a masked URL): a job read and written
    /// back keeps its secrets instead of storing the mask. A mask with no stored value behind it is an error on
    /// that field.
    pub fn restore_masked(&mut self, stored: &HttpAction) -> Result<(), (String, String)> {
        if self.url != stored.url && self.url == masked_url(&stored.url) {
            self.url = stored.url.clone();
        }
        for (name, value) in self.headers.iter_mut() {
            if value == MASK && is_secret_header(name) {
                let kept = stored.headers.iter().find(|(old, _)| old.eq_ignore_ascii_case(name)).map(|(_, v)| v);
                match kept {
                    Some(kept) => value.clone_from(kept),
                    None => {
                        return Err((
                            "headers".to_string(),
                            format!(
                                "{name:?} is the mask {MASK:?} but the job has no such header to keep: give its value"
                            ),
                        ));
                    }
                }
            }
        }
        if self.signing_secret.as_deref() == Some(MASK) {
            match &stored.signing_secret {
                Some(kept) => self.signing_secret = Some(kept.clone()),
                None => {
                    return Err((
                        "signing_secret".to_string(),
                        format!("is the mask {MASK:?} but the job has no signing secret to keep: give the secret"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The rule for a webhook's URL: absolute `http` or `https` with a host. The error is the message.
pub fn check_absolute_http(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(parsed)
            if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        Ok(parsed) => Err(format!("{url:?} must be an absolute http or https URL (scheme {:?})", parsed.scheme())),
        Err(err) => Err(format!("{url:?} is not an absolute http or https URL: {err}")),
    }
}

/// A URL as shown in responses and errors: a password in it, and the values of query parameters named like a
/// secret header (`?token=…`, `?api_key=…`), masked.
pub fn masked_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else { return url.to_string() };
    let mut changed = false;
    if parsed.password().is_some() {
        changed |= parsed.set_password(Some(MASK)).is_ok();
    }
    if parsed.query_pairs().any(|(name, _)| is_secret_header(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret_header(&name) { MASK.to_string() } else { value.into_owned() };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed { parsed.to_string() } else { url.to_string() }
}

/// Whether a header (or query parameter) is secret: `Authorization`, `Proxy-Authorization`, `Cookie`, and any
/// name containing `token`, `secret`, `key`, `password` or `signature`, case-insensitive.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "authorization" | "proxy-authorization" | "cookie")
        || ["token", "secret", "key", "password", "signature"].iter().any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(url: &str) -> HttpAction {
        serde_json::from_value(serde_json::json!({ "url": url })).unwrap()
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(action("http://127.0.0.1:9/hook").validate().is_ok());
        assert!(action("https://example.internal/x?y=1").validate().is_ok());
        assert_eq!(action("example.com/hook").validate().unwrap_err().0, "url");
        assert_eq!(action("ftp://example.com/").validate().unwrap_err().0, "url");
        assert_eq!(action("file:///etc/passwd").validate().unwrap_err().0, "url");
    }

    #[test]
    fn secret_headers_are_masked_and_others_kept() {
        let mut a = action("http://127.0.0.1/");
        for name in ["Authorization", "X-Api-Key", "x-auth-token", "Cookie", "X-Trace"] {
            a.headers.insert(name.to_string(), "v".to_string());
        }
        let shown = a.masked();
        assert_eq!(shown.headers["Authorization"], MASK);
        assert_eq!(shown.headers["X-Api-Key"], MASK);
        assert_eq!(shown.headers["x-auth-token"], MASK);
        assert_eq!(shown.headers["Cookie"], MASK);
        assert_eq!(shown.headers["X-Trace"], "v");
        let with_secrets = action("https://user:pw@h.example/p?api_key=k1&page=2");
        assert_eq!(with_secrets.masked().url, "https://user:********@h.example/p?api_key=********&page=2");
        assert_eq!(action("http://h/p?a=1").masked().url, "http://h/p?a=1");
    }

    #[test]
    fn bad_headers_and_bodies_are_rejected() {
        let mut a = action("http://127.0.0.1/");
        a.headers.insert("bad header".into(), "v".into());
        assert_eq!(a.validate().unwrap_err().0, "headers");
        let mut b = action("http://127.0.0.1/");
        b.body = Some("x".into());
        b.json = Some(serde_json::json!({}));
        assert_eq!(b.validate().unwrap_err().0, "json");
        let mut c = action("http://127.0.0.1/");
        c.timeout_seconds = Some(0.0);
        assert_eq!(c.validate().unwrap_err().0, "timeout_seconds");
    }

    #[test]
    fn retry_and_signing_secret_are_validated_and_the_secret_masked() {
        let with = |extra: serde_json::Value| -> HttpAction {
            let mut value = serde_json::json!({"url": "http://127.0.0.1/"});
            value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(value).unwrap()
        };
        let good = with(serde_json::json!({"retry": {"max_attempts": 3},
            "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}));
        assert!(good.validate().is_ok());
        assert_eq!(good.retry.as_ref().unwrap().backoff_seconds, retry::DEFAULT_BACKOFF_SECONDS);
        assert_eq!(good.masked().signing_secret.as_deref(), Some(MASK));
        let bad = with(serde_json::json!({"retry": {"max_attempts": 0}}));
        assert_eq!(bad.validate().unwrap_err().0, "retry.max_attempts");
        let bad = with(serde_json::json!({"signing_secret": "hunter2"}));
        assert_eq!(bad.validate().unwrap_err().0, "signing_secret");
    }
}
