//! Delivery: what one attempt at a claimed fire does, and what follows from it. It owns the webhook client, the
//! target policy, rate limits, signing, the registered Rust functions, attempt metrics and the retry decision, and
//! answers the scheduler with a typed outcome. The scheduler's loop only claims, hands over and records.
//! `http` makes a webhook call, `policy` decides which targets may be called, `ratelimit` paces calls,
//! `functions` holds the registered Rust functions, and `settings` is the `[webhooks]` section they are built from.

pub mod functions;
pub mod http;
pub mod policy;
pub mod ratelimit;
pub mod settings;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;

use crate::action::retry::{is_retryable, parse_retry_after};
use crate::action::signing::SigningKey;
use crate::action::template::{self, JobVars, RunVars, Vars};
use crate::action::{Action, FunctionAction, HttpAction, check_absolute_http};
use crate::job::{Run, RunStatus};
use crate::metrics::Metrics;
use crate::trigger::time::format_time;
pub use functions::{Functions, JobContext};
use http::{Attempt, DeliveryHeaders};
use policy::TargetPolicy;
use ratelimit::RateLimits;
pub use settings::WebhookSettings;

/// What comes after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The run is over: `Succeeded` or `Failed`.
    Done(RunStatus),
    /// Try again after `wait`; `max_attempts` is the policy's bound, for the run's error message.
    Retry {
        /// How long to wait before the next attempt.
        wait: Duration,
        /// The retry policy's `max_attempts`.
        max_attempts: u32,
    },
}

/// The delivery component; one per scheduler, shared by every delivery task.
pub struct Delivery {
    http: reqwest::Client,
    policy: Arc<TargetPolicy>,
    rate_limits: RateLimits,
    /// `[webhooks] signing_secret`, for webhook actions without their own.
    signing_key: Option<SigningKey>,
    functions: Functions,
    metrics: Arc<Metrics>,
}

impl Delivery {
    /// Build from the webhook settings; the error is (the setting's key, message).
    pub fn new(
        settings: &WebhookSettings,
        functions: Functions,
        metrics: Arc<Metrics>,
    ) -> Result<Delivery, (String, String)> {
        let signing_key = match &settings.signing_secret {
            Some(secret) => Some(
                SigningKey::parse(secret.expose_secret()).map_err(|message| ("signing_secret".to_string(), message))?,
            ),
            None => None,
        };
        let policy = Arc::new(TargetPolicy::from_config(settings)?);
        Ok(Delivery {
            http: http::client(policy.clone()),
            policy,
            rate_limits: RateLimits::new(settings),
            signing_key,
            functions,
            metrics,
        })
    }

    /// Which targets webhooks may reach; checked when a job is saved as well as at every attempt.
    pub fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// The policy, shared: health notifications pass it too.
    pub fn shared_policy(&self) -> Arc<TargetPolicy> {
        self.policy.clone()
    }

    /// The webhook client (it resolves names through the policy), shared with the notifier.
    pub fn http_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The Rust functions jobs may call.
    pub fn functions(&self) -> &Functions {
        &self.functions
    }

    /// Wait until the run's target may be called under the rate limits. Called before a worker is taken, so a
    /// rate-limited target does not hold up the pool.
    pub async fn wait_turn(&self, run: &Run) {
        if let Action::Http(action) = &run.action {
            self.rate_limits.acquire(&action.url).await;
        }
    }

    /// Make one attempt of the run's action; `now` stamps the signature. A templated action sees its job as the run
    /// alone tells it (its id); `attempt_for` takes the job's name and labels too.
    pub async fn attempt(&self, run: &Run, now: DateTime<Utc>) -> Attempt {
        let job = JobVars { id: run.job_id.clone(), ..JobVars::default() };
        self.attempt_for(run, &job, now).await
    }

    /// Make one attempt of the run's action, a templated one rendered with `job`; `now` stamps the signature.
    pub async fn attempt_for(&self, run: &Run, job: &JobVars, now: DateTime<Utc>) -> Attempt {
        let attempt = match &run.action {
            Action::Http(action) => self.call_webhook(run, action, job, now).await,
            Action::Function(function) => self.call_function(run, function).await,
        };
        self.metrics.attempt(&attempt);
        attempt
    }

    /// Whether to try again after `attempt`, whose call the run's `attempts` already counts, and when.
    pub fn decide(&self, run: &Run, attempt: &Attempt, now: DateTime<Utc>) -> Next {
        let retry = run.action.retry().filter(|policy| {
            !attempt.succeeded
                && run.attempts < policy.max_attempts
                && is_retryable(attempt.http_status, attempt.transport_failed)
        });
        match retry {
            None => Next::Done(if attempt.succeeded { RunStatus::Succeeded } else { RunStatus::Failed }),
            Some(policy) => {
                self.metrics.retry();
                let retry_after = attempt.retry_after.as_deref().and_then(|value| parse_retry_after(value, now));
                Next::Retry { wait: policy.wait(run.attempts, retry_after), max_attempts: policy.max_attempts }
            }
        }
    }

    async fn call_webhook(&self, run: &Run, action: &HttpAction, job: &JobVars, now: DateTime<Utc>) -> Attempt {
        let scheduled_time = format_time(run.scheduled_time, run.timezone());
        // Rendered first, so the target policy judges the URL that is called and the signature covers the body that
        // is sent. A template that fails fails the attempt (not retried: it would fail again).
        let rendered;
        let action = if action.template {
            let vars = Vars {
                job: job.clone(),
                scheduled_time: scheduled_time.clone(),
                scheduled_timestamp: run.scheduled_time.timestamp(),
                attempt: run.attempts,
                idempotency_key: run.idempotency_key.clone(),
                run: RunVars { kind: run.kind.as_str().to_string() },
            };
            rendered =
                match template::render(action, &vars).and_then(|rendered| {
                    check_absolute_http(&rendered.url).map_err(|message| ("url".to_string(), message))?;
                    if let Some(name) = rendered.headers.iter().find_map(|(name, value)| {
                        reqwest::header::HeaderValue::from_str(value).is_err().then_some(name)
                    }) {
                        return Err((format!("headers.{name}"), "renders to an invalid header value".to_string()));
                    }
                    Ok(rendered)
                }) {
                    Ok(rendered) => rendered,
                    Err((field, message)) => {
                        return Attempt::refused(format!("template: action.{field}: {message}; no request was made"));
                    }
                };
            &rendered
        } else {
            action
        };
        // A literal address never reaches the policy's resolver; names are checked there, after resolution.
        let url = match policy::parse_url(&action.url).and_then(|url| self.policy.check_parsed(&url).map(|()| url)) {
            Ok(url) => url,
            Err(reason) => return Attempt::refused(format!("target policy: {reason}; no request was made")),
        };
        let signing_key = self.signing_key_for(run, action);
        let headers = DeliveryHeaders {
            job_id: &run.job_id,
            scheduled_time: &scheduled_time,
            idempotency_key: &run.idempotency_key,
            signing: signing_key.as_ref().map(|key| (key, now.timestamp())),
            backfill: run.kind == crate::job::RunKind::Backfill,
        };
        http::attempt(&self.http, action, url, &headers).await
    }

    /// The key that signs a run's calls: the action's own secret, else the configured one. A stored secret that
    /// no longer parses (saved before validation existed) sends the call unsigned rather than not at all.
    fn signing_key_for(&self, run: &Run, action: &HttpAction) -> Option<SigningKey> {
        match action.signing_secret.as_deref() {
            Some(secret) => match SigningKey::parse(secret) {
                Ok(key) => Some(key),
                Err(message) => {
                    tracing::error!(job_id = %run.job_id, %message, "the job's signing secret is invalid; sending unsigned");
                    None
                }
            },
            None => self.signing_key.clone(),
        }
    }

    async fn call_function(&self, run: &Run, action: &FunctionAction) -> Attempt {
        let started = Instant::now();
        let context = JobContext {
            job_id: run.job_id.clone(),
            scheduled_time: run.scheduled_time,
            idempotency_key: run.idempotency_key.clone(),
            attempt: run.attempts,
        };
        let outcome = self.functions.call(&action.function, context).await;
        Attempt {
            succeeded: outcome.is_ok(),
            http_status: None,
            error: outcome.err(),
            response_excerpt: None,
            duration: started.elapsed(),
            transport_failed: false,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::HttpAction;

    fn run_of(action: Action) -> Run {
        Run {
            idempotency_key: "k".into(),
            job_id: "j".into(),
            scheduled_time: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
            kind: crate::job::RunKind::Scheduled,
            status: RunStatus::Running,
            attempts: 1,
            started_at: None,
            finished_at: None,
            http_status: None,
            duration_ms: None,
            error: None,
            response_excerpt: None,
            action,
            executor: "default".into(),
            timezone: "UTC".into(),
            lease_expires_at: None,
            created_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
            removed_job: None,
        }
    }

    fn delivery() -> Delivery {
        Delivery::new(&WebhookSettings::default(), Functions::default(), Arc::new(Metrics::default())).unwrap()
    }

    fn webhook(json: serde_json::Value) -> Action {
        Action::Http(serde_json::from_value::<HttpAction>(json).unwrap())
    }

    fn failed_with(status: u16) -> Attempt {
        Attempt {
            succeeded: false,
            http_status: Some(status),
            error: Some(format!("HTTP {status}")),
            response_excerpt: None,
            duration: Duration::ZERO,
            transport_failed: false,
            retry_after: None,
        }
    }

    #[test]
    fn a_retryable_failure_within_the_policy_is_tried_again_and_the_rest_end_the_run() {
        let delivery = delivery();
        let now = Utc::now();
        let mut run = run_of(webhook(serde_json::json!({"url": "http://127.0.0.1:9/", "retry": {"max_attempts": 2}})));
        assert!(matches!(delivery.decide(&run, &failed_with(503), now), Next::Retry { max_attempts: 2, .. }));
        assert_eq!(delivery.decide(&run, &failed_with(404), now), Next::Done(RunStatus::Failed));
        run.attempts = 2;
        assert_eq!(delivery.decide(&run, &failed_with(503), now), Next::Done(RunStatus::Failed));
        let ok = Attempt { succeeded: true, http_status: Some(200), error: None, ..failed_with(200) };
        assert_eq!(delivery.decide(&run, &ok, now), Next::Done(RunStatus::Succeeded));
    }

    #[test]
    fn retry_after_longer_than_the_backoff_is_waited() {
        let delivery = delivery();
        let run = run_of(webhook(serde_json::json!({"url": "http://127.0.0.1:9/", "retry": {"max_attempts": 3}})));
        let attempt = Attempt { retry_after: Some("120".into()), ..failed_with(429) };
        match delivery.decide(&run, &attempt, Utc::now()) {
            Next::Retry { wait, .. } => assert_eq!(wait, Duration::from_secs(120)),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_denied_target_is_refused_without_a_request_and_not_retried() {
        let delivery = delivery();
        let run = run_of(webhook(serde_json::json!({"url": "http://169.254.169.254/", "retry": {"max_attempts": 5}})));
        let attempt = delivery.attempt(&run, Utc::now()).await;
        assert!(!attempt.succeeded);
        assert_eq!(attempt.http_status, None);
        assert!(attempt.error.as_deref().unwrap().starts_with("target policy"), "{attempt:?}");
        assert_eq!(delivery.decide(&run, &attempt, Utc::now()), Next::Done(RunStatus::Failed));
    }

    #[tokio::test]
    async fn a_function_action_calls_the_registered_function_with_the_fire() {
        let delivery = delivery();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = seen.clone();
        delivery.functions().register("collect", move |context: JobContext| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().push((context.job_id, context.attempt));
                Ok(())
            }
        });
        let attempt = delivery.attempt(&run_of(Action::function("collect")), Utc::now()).await;
        assert!(attempt.succeeded, "{attempt:?}");
        assert_eq!(*seen.lock().unwrap(), [("j".to_string(), 1)]);
        let missing = delivery.attempt(&run_of(Action::function("nobody")), Utc::now()).await;
        assert!(missing.error.as_deref().unwrap().contains("no function is registered"), "{missing:?}");
    }
}
