//! Notifications about a job's health: who to tell (`notify` on a job, `[notify]` in the configuration as the
//! default), which changes to tell (failure, recovery, missed, auto_paused, stale), and what is sent (a signed
//! JSON POST).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::action::signing::SigningKey;
use crate::action::{MASK, check_absolute_http, is_secret_header, masked_url};
use crate::job::{Job, Run, RunStatus};
use ledger::Notification;

pub mod ledger;
pub mod notifier;
pub mod send;

/// At most this many headers on a notification, as on an action.
const MAX_HEADERS: usize = 64;
/// A header's name and value together, as on an action.
const MAX_HEADER_BYTES: usize = 8192;
/// A URL's length, as on an action.
const MAX_URL_BYTES: usize = 8192;

/// A change in a job's health worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// Consecutive failures reached `failure_threshold` (once per failing streak).
    Failure,
    /// The first success after a failure notification.
    Recovery,
    /// A fire was missed (past its misfire grace time).
    Missed,
    /// apsched paused the job after `auto_pause_after_failures`.
    AutoPaused,
    /// No success for `stale_after_seconds`.
    Stale,
}

impl NotifyOn {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [NotifyOn; 5] =
        [NotifyOn::Failure, NotifyOn::Recovery, NotifyOn::Missed, NotifyOn::AutoPaused, NotifyOn::Stale];

    /// The name in `on`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Failure => "failure",
            NotifyOn::Recovery => "recovery",
            NotifyOn::Missed => "missed",
            NotifyOn::AutoPaused => "auto_paused",
            NotifyOn::Stale => "stale",
        }
    }

    /// The `type` of the notification sent: `job.failure`, ….
    pub fn event_type(self) -> String {
        format!("job.{}", self.as_str())
    }

    /// A kind from its name in `on`.
    pub fn parse(value: &str) -> Option<NotifyOn> {
        NotifyOn::ALL.into_iter().find(|on| on.as_str() == value)
    }
}

fn default_on() -> Vec<NotifyOn> {
    NotifyOn::ALL.to_vec()
}

fn default_threshold() -> u32 {
    1
}

/// Where and when to send a job's notifications. Its Debug output masks the secrets, as `masked` does.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Absolute `http` or `https` URL the notifications are POSTed to.
    #[schema(format = "uri", min_length = 1, max_length = 8192)]
    pub url: String,
    /// Which changes are sent (default: all of `failure`, `recovery`, `missed`, `auto_paused`, `stale`).
    #[serde(default = "default_on")]
    pub on: Vec<NotifyOn>,
    /// Headers sent with each notification; secret-looking values are shown masked, as an action's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A Standard Webhooks secret (`whsec_` + base64 of 24–64 bytes) signing each notification. Shown masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// Consecutive failures before `failure` is sent (at least 1, default 1).
    #[serde(default = "default_threshold")]
    #[schema(minimum = 1)]
    pub failure_threshold: u32,
}

impl std::fmt::Debug for NotifySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.masked();
        f.debug_struct("NotifySpec")
            .field("url", &shown.url)
            .field("on", &shown.on)
            .field("headers", &shown.headers)
            .field("signing_secret", &shown.signing_secret)
            .field("failure_threshold", &shown.failure_threshold)
            .finish()
    }
}

/// `[notify]` as a serialised configuration shows it: masked, so no secret leaves the process that way.
pub fn serialize_masked<S: serde::Serializer>(spec: &Option<NotifySpec>, serializer: S) -> Result<S::Ok, S::Error> {
    spec.as_ref().map(NotifySpec::masked).serialize(serializer)
}

impl NotifySpec {
    /// Check what serde cannot; the error is (field inside `notify`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        if self.url.len() > MAX_URL_BYTES {
            return fail("url", format!("is longer than {MAX_URL_BYTES} bytes"));
        }
        check_absolute_http(&self.url).map_err(|message| ("url".to_string(), message))?;
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
        if self.failure_threshold == 0 {
            return fail("failure_threshold", "must be at least 1".to_string());
        }
        if let Some(secret) = &self.signing_secret {
            SigningKey::parse(secret).map_err(|message| ("signing_secret".to_string(), message))?;
        }
        Ok(())
    }

    /// As shown to clients: the URL as `masked_url` says, secret-looking header values and the secret masked.
    pub fn masked(&self) -> NotifySpec {
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

    /// Put back the secrets a client sent as it was shown them (`********`): a job read and written back keeps
    /// them. A mask with nothing stored behind it is an error on that field.
    pub fn restore_masked(&mut self, stored: Option<&NotifySpec>) -> Result<(), (String, String)> {
        let missing = |field: &str| (field.to_string(), format!("is the mask {MASK:?} but nothing is stored to keep"));
        for (name, value) in self.headers.iter_mut() {
            if value == MASK && is_secret_header(name) {
                let kept = stored.and_then(|stored| {
                    stored.headers.iter().find(|(old, _)| old.eq_ignore_ascii_case(name)).map(|(_, v)| v)
                });
                value.clone_from(kept.ok_or_else(|| missing("headers"))?);
            }
        }
        if self.signing_secret.as_deref() == Some(MASK) {
            let kept = stored.and_then(|stored| stored.signing_secret.clone());
            self.signing_secret = Some(kept.ok_or_else(|| missing("signing_secret"))?);
        }
        if let Some(stored) = stored
            && self.url != stored.url
            && self.url == masked_url(&stored.url)
        {
            self.url.clone_from(&stored.url);
        }
        Ok(())
    }

    /// Whether `kind` is sent.
    pub fn wants(&self, kind: NotifyOn) -> bool {
        self.on.contains(&kind)
    }

    /// What a run's outcome sends, given the consecutive failures before it (`before`) and after it (`after`):
    /// `failure` exactly when the streak reaches the threshold (once per streak), `recovery` on the success that
    /// ends a streak that had reached it (so a failure notification was sent, or would have been).
    pub fn on_outcome(&self, before: u32, after: u32) -> Option<NotifyOn> {
        let kind = if after == 0 && before >= self.failure_threshold {
            NotifyOn::Recovery
        } else if after > before && after == self.failure_threshold {
            NotifyOn::Failure
        } else {
            return None;
        };
        self.wants(kind).then_some(kind)
    }
}

/// Read a `notify` value from the API, naming the field inside `notify` on error (`notify` itself when it is not
/// an object).
pub fn parse(value: serde_json::Value) -> Result<NotifySpec, (String, String)> {
    const FIELDS: [&str; 5] = ["url", "on", "headers", "signing_secret", "failure_threshold"];
    let serde_json::Value::Object(object) = &value else {
        return Err(("notify".to_string(), "must be an object with at least `url`".to_string()));
    };
    if !object.contains_key("url") {
        return Err(("url".to_string(), "is required".to_string()));
    }
    if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err((unknown.clone(), format!("unknown field; expected one of {}", FIELDS.join(", "))));
    }
    if let Some(on) = object.get("on").and_then(|on| on.as_array()) {
        for item in on {
            if item.as_str().and_then(NotifyOn::parse).is_none() {
                let known: Vec<&str> = NotifyOn::ALL.iter().map(|on| on.as_str()).collect();
                return Err(("on".to_string(), format!("{item} is not one of {}", known.join(", "))));
            }
        }
    }
    // Each field alone first, so a wrong type names its field.
    for (field, item) in object {
        let checked = match field.as_str() {
            "url" => serde_json::from_value::<String>(item.clone()).map(drop),
            "on" => serde_json::from_value::<Vec<NotifyOn>>(item.clone()).map(drop),
            "headers" => serde_json::from_value::<BTreeMap<String, String>>(item.clone()).map(drop),
            "signing_secret" => serde_json::from_value::<Option<String>>(item.clone()).map(drop),
            _ => serde_json::from_value::<u32>(item.clone()).map(drop),
        };
        // A secret's value is never repeated in an error.
        checked.map_err(|_| (field.clone(), format!("has the wrong type for `{field}`")))?;
    }
    let spec: NotifySpec = serde_json::from_value(value).map_err(|err| ("notify".to_string(), err.to_string()))?;
    spec.validate()?;
    Ok(spec)
}

/// The job a notification is about, as it names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotifiedJob {
    /// The job's id.
    pub id: String,
    /// The job's name, if it has one.
    pub name: Option<String>,
    /// The job's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The JSON body of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Payload {
    /// `job.failure`, `job.recovery`, `job.missed`, `job.auto_paused` or `job.stale`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened, RFC 3339.
    pub time: String,
    /// The job.
    pub job: NotifiedJob,
    /// The run that caused it, as the API shows runs; null for `stale`.
    #[schema(value_type = Option<Object>)]
    pub run: Option<serde_json::Value>,
    /// Failed runs since the last success, at the time.
    pub consecutive_failures: u32,
    /// Why apsched paused the job; only on `auto_paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
}

impl Payload {
    /// The body of a `kind` notification about `job` at `time`, caused by `run` (none for `stale`).
    pub fn new(kind: NotifyOn, job: &Job, run: Option<&Run>, consecutive_failures: u32, time: DateTime<Utc>) -> Self {
        Payload {
            event_type: kind.event_type(),
            time: time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            job: NotifiedJob { id: job.id.clone(), name: job.name.clone(), labels: job.labels.clone() },
            run: run.map(run_summary),
            consecutive_failures,
            paused_reason: (kind == NotifyOn::AutoPaused).then(|| job.paused_reason.clone()).flatten(),
        }
    }
}

/// What a notification says of its run: the ledger's fields, never the action (it may carry secrets).
fn run_summary(run: &Run) -> serde_json::Value {
    serde_json::json!({
        "idempotency_key": run.idempotency_key,
        "scheduled_time": run.scheduled_time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "kind": run.kind,
        "status": run.status,
        "attempts": run.attempts,
        "http_status": run.http_status,
        "error": run.error,
        "finished_at": run.finished_at.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    })
}

/// Whose spec applies to `job`: its own `notify`, else `[notify]`.
fn spec_for<'a>(job: &'a Job, default: Option<&'a NotifySpec>) -> Option<&'a NotifySpec> {
    job.notify.as_ref().or(default)
}

fn pending(
    spec: &NotifySpec,
    kind: NotifyOn,
    job: &Job,
    run: Option<&Run>,
    failures: u32,
    now: DateTime<Utc>,
) -> Notification {
    let payload = serde_json::to_value(Payload::new(kind, job, run, failures, now)).unwrap_or_default();
    Notification { target: Some(spec.clone()), ..Notification::pending(&job.id, kind, payload, now) }
}

/// The notifications a run's first outcome causes. `job` is the job after the outcome was applied (its health and,
/// if it was auto-paused, its pause); `before` its consecutive failures before.
pub fn for_outcome(
    job: &Job,
    run: &Run,
    before: u32,
    auto_paused: bool,
    default: Option<&NotifySpec>,
) -> Vec<Notification> {
    let Some(spec) = spec_for(job, default) else { return Vec::new() };
    let now = run.finished_at.unwrap_or(run.created_at);
    let after = job.health.consecutive_failures;
    let mut notifications: Vec<Notification> = spec
        .on_outcome(before, after)
        .map(|kind| pending(spec, kind, job, Some(run), after, now))
        .into_iter()
        .collect();
    if auto_paused && spec.wants(NotifyOn::AutoPaused) {
        notifications.push(pending(spec, NotifyOn::AutoPaused, job, Some(run), after, now));
    }
    notifications
}

/// What a claim keeps of `job` on its runs, for their outcomes' notifications: the job as claimed, if the claim
/// removes it (its trigger has finished: no `next_run_time`) and an outcome may notify.
pub fn keep_removed_job(
    job: &Job,
    next_run_time: Option<DateTime<Utc>>,
    default: Option<&NotifySpec>,
) -> Option<Arc<Job>> {
    if next_run_time.is_some() {
        return None;
    }
    let spec = spec_for(job, default)?;
    (spec.wants(NotifyOn::Failure) || spec.wants(NotifyOn::Recovery)).then(|| Arc::new(job.clone()))
}

/// The notifications the first outcome of a run whose job its claim removed causes: as `for_outcome` would for the
/// job as claimed, its health moved on by this outcome (it can no longer be paused).
pub fn for_outcome_of_removed_job(run: &Run, default: Option<&NotifySpec>) -> Vec<Notification> {
    let Some(job) = run.removed_job.as_deref() else { return Vec::new() };
    let mut after = job.clone();
    let before = after.health.consecutive_failures;
    after.health.record(run.status == RunStatus::Succeeded, run.finished_at.unwrap_or(run.created_at));
    for_outcome(&after, run, before, false, default)
}

/// The notification a job turning stale at `now` causes, if it wants one.
pub fn for_stale(job: &Job, default: Option<&NotifySpec>, now: DateTime<Utc>) -> Option<Notification> {
    let spec = spec_for(job, default)?;
    let failures = job.health.consecutive_failures;
    spec.wants(NotifyOn::Stale).then(|| pending(spec, NotifyOn::Stale, job, None, failures, now))
}

/// The notification a fire recorded `missed` causes, if its job wants one.
pub fn for_missed(job: &Job, run: &Run, default: Option<&NotifySpec>) -> Option<Notification> {
    let spec = spec_for(job, default)?;
    (run.status == RunStatus::Missed && spec.wants(NotifyOn::Missed))
        .then(|| pending(spec, NotifyOn::Missed, job, Some(run), job.health.consecutive_failures, run.created_at))
}

/// `[notify]` as a store holds it: set when the scheduler is built, read by the writes that add notifications.
#[derive(Debug, Clone, Default)]
pub struct DefaultSpec(Arc<std::sync::RwLock<Option<NotifySpec>>>);

impl DefaultSpec {
    /// Replace the default.
    pub fn set(&self, spec: Option<NotifySpec>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = spec;
    }

    /// The default now (a copy: it is used across awaits).
    pub fn get(&self) -> Option<NotifySpec> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The Standard Webhooks headers for a notification body: `webhook-id` (the notification's id),
/// `webhook-timestamp` and `webhook-signature`.
pub fn signature_headers(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", key.sign(id, timestamp, body)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn spec(on: &[NotifyOn], threshold: u32) -> NotifySpec {
        NotifySpec {
            url: "https://hooks.example.com/alerts".into(),
            on: on.to_vec(),
            headers: BTreeMap::new(),
            signing_secret: None,
            failure_threshold: threshold,
        }
    }

    #[test]
    fn defaults_are_every_kind_and_a_threshold_of_one() {
        let spec = parse(json!({"url": "https://hooks.example.com/x"})).unwrap();
        assert_eq!(spec.on, NotifyOn::ALL.to_vec());
        assert_eq!(spec.failure_threshold, 1);
        assert_eq!(
            serde_json::to_value(&spec).unwrap()["on"],
            json!(["failure", "recovery", "missed", "auto_paused", "stale"])
        );
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (json!({"url": "example.com/hook"}), "url"),
            (json!({"url": "ftp://example.com/"}), "url"),
            (json!({"url": "https://h.example/", "on": ["failure", "exploded"]}), "on"),
            (json!({"url": "https://h.example/", "on": [3]}), "on"),
            (json!({"url": "https://h.example/", "failure_threshold": 0}), "failure_threshold"),
            (json!({"url": "https://h.example/", "failure_threshold": -1}), "failure_threshold"),
            (json!({"url": "https://h.example/", "signing_secret": "hunter2"}), "signing_secret"),
            (json!({"url": "https://h.example/", "headers": {"bad name": "x"}}), "headers"),
            (json!({"on": ["failure"]}), "url"),
            (json!({"url": "https://h.example/", "signing_secret": 7}), "signing_secret"),
            (json!({"url": "https://h.example/", "colour": "red"}), "colour"),
            (json!(["https://h.example/"]), "notify"),
        ];
        for (value, field) in cases {
            let (named, message) = parse(value.clone()).unwrap_err();
            assert_eq!(named, field, "{value}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn secrets_are_shown_masked() {
        let mut spec = spec(&NotifyOn::ALL, 1);
        spec.signing_secret = Some(SECRET.into());
        spec.headers.insert("Authorization".into(), "Bearer abc".into());
        spec.headers.insert("X-Team".into(), "ops".into());
        let shown = spec.masked();
        assert_eq!(shown.signing_secret.as_deref(), Some(MASK));
        assert_eq!(shown.headers["Authorization"], MASK);
        assert_eq!(shown.headers["X-Team"], "ops");
    }

    #[test]
    fn failure_once_per_streak_at_the_threshold_and_recovery_after_it() {
        let spec = spec(&NotifyOn::ALL, 2);
        assert_eq!(spec.on_outcome(0, 1), None);
        assert_eq!(spec.on_outcome(1, 2), Some(NotifyOn::Failure));
        assert_eq!(spec.on_outcome(2, 3), None);
        assert_eq!(spec.on_outcome(3, 0), Some(NotifyOn::Recovery));
        // A streak that never reached the threshold recovers silently, and successes say nothing.
        assert_eq!(spec.on_outcome(1, 0), None);
        assert_eq!(spec.on_outcome(0, 0), None);
        let only_failures = super::tests::spec(&[NotifyOn::Failure], 1);
        assert_eq!(only_failures.on_outcome(0, 1), Some(NotifyOn::Failure));
        assert_eq!(only_failures.on_outcome(1, 0), None);
    }

    #[test]
    fn notifications_are_signed_the_standard_webhooks_way() {
        let key = SigningKey::parse(SECRET).unwrap();
        let body = br#"{"type":"job.failure"}"#;
        let headers = signature_headers(&key, "ntf_1", 1_700_000_000, body);
        assert_eq!(headers[0], ("webhook-id", "ntf_1".to_string()));
        assert_eq!(headers[1], ("webhook-timestamp", "1700000000".to_string()));
        assert_eq!(headers[2].1, key.sign("ntf_1", 1_700_000_000, body));
        assert!(headers[2].1.starts_with("v1,"));
    }

    #[test]
    fn event_types_are_prefixed_with_job() {
        let types: Vec<String> = NotifyOn::ALL.iter().map(|on| on.event_type()).collect();
        assert_eq!(types, ["job.failure", "job.recovery", "job.missed", "job.auto_paused", "job.stale"]);
    }
}
