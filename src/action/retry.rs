//! Retries: which failed attempts are tried again, and how long to wait first. Pure
//! functions; the scheduler's delivery loop applies them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backoff::Backoff;

/// Beyond this many attempts a webhook is not flaky but broken; also bounds how long one fire can stay unfinished.
pub const MAX_ATTEMPTS: u32 = 100;
/// A day: the longest wait between two attempts a policy may ask for.
pub const MAX_BACKOFF_SECONDS: f64 = 86_400.0;
/// When `retry` gives no `backoff_seconds`: a second, long enough for a restarting receiver to come back.
pub const DEFAULT_BACKOFF_SECONDS: f64 = 1.0;
/// When `retry` gives no `max_backoff_seconds`: five minutes, as common webhook senders cap their early retries.
pub const DEFAULT_MAX_BACKOFF_SECONDS: f64 = 300.0;
/// A receiver's `Retry-After` is honoured up to an hour; a longer one is taken as an hour, so one answer cannot
/// park a fire (and its max_instances slot) for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Each wait is scaled by a random factor in [0.8, 1.2], so receivers that failed together are not hit together
/// again.
const JITTER: f64 = 0.2;

/// An action's retry policy; absent means one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1–100).
    #[serde(deserialize_with = "crate::integral::integer")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// The first retry waits about this long; each later one twice the previous (default 1).
    #[serde(default = "default_backoff")]
    #[schema(exclusive_minimum = 0, maximum = 86400)]
    pub backoff_seconds: f64,
    /// The cap on the doubling (default 300).
    #[serde(default = "default_max_backoff")]
    #[schema(exclusive_minimum = 0, maximum = 86400)]
    pub max_backoff_seconds: f64,
}

fn default_backoff() -> f64 {
    DEFAULT_BACKOFF_SECONDS
}

fn default_max_backoff() -> f64 {
    DEFAULT_MAX_BACKOFF_SECONDS
}

impl RetryPolicy {
    /// The error is (field inside `retry`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return fail("max_attempts", format!("{} is out of range 1–{MAX_ATTEMPTS}", self.max_attempts));
        }
        if !(self.backoff_seconds > 0.0 && self.backoff_seconds <= MAX_BACKOFF_SECONDS) {
            return fail(
                "backoff_seconds",
                format!("{} is out of range (0, {MAX_BACKOFF_SECONDS}]", self.backoff_seconds),
            );
        }
        if !(self.max_backoff_seconds >= self.backoff_seconds && self.max_backoff_seconds <= MAX_BACKOFF_SECONDS) {
            return fail(
                "max_backoff_seconds",
                format!(
                    "{} must be at least backoff_seconds ({}) and at most {MAX_BACKOFF_SECONDS}",
                    self.max_backoff_seconds, self.backoff_seconds
                ),
            );
        }
        Ok(())
    }

    /// The policy's schedule: `backoff_seconds` doubling up to `max_backoff_seconds`, jittered.
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_secs_f64(self.backoff_seconds), Duration::from_secs_f64(self.max_backoff_seconds))
            .with_jitter(JITTER)
    }

    /// The wait before the `retry`-th retry (1-based) without jitter: `min(b·2^(n−1), m)`.
    pub fn base_backoff(&self, retry: u32) -> Duration {
        self.backoff().base(retry.saturating_sub(1))
    }

    /// The wait before the `retry`-th retry: the backoff scaled by a random factor in [0.8, 1.2], or what the
    /// receiver's `Retry-After` asked for (capped at `MAX_RETRY_AFTER`) when that is longer.
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff().wait(retry.saturating_sub(1));
        backoff.max(retry_after.map_or(Duration::ZERO, |asked| asked.min(MAX_RETRY_AFTER)))
    }
}

/// Whether an attempt's failure is worth another try: no answer at all (connection error, timeout, a body cut
/// short), 408, 429 and 5xx. Any other 4xx says the request itself is wrong, and repeating it cannot help; an
/// attempt that was never made (the target policy refused it) would be refused again.
pub fn is_retryable(http_status: Option<u16>, transport_failed: bool) -> bool {
    if transport_failed {
        return true;
    }
    http_status.is_some_and(|status| status == 408 || status == 429 || (500..=599).contains(&status))
}

/// A `Retry-After` value (RFC 9110): whole seconds, or an HTTP date read against `now`. A date in the past is no
/// wait; anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let date: DateTime<Utc> = date.into();
    Some((date - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, backoff: f64, max_backoff: f64) -> RetryPolicy {
        RetryPolicy { max_attempts, backoff_seconds: backoff, max_backoff_seconds: max_backoff }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy(10, 2.0, 10.0);
        let waits: Vec<f64> = (1..=5).map(|n| p.base_backoff(n).as_secs_f64()).collect();
        assert_eq!(waits, [2.0, 4.0, 8.0, 10.0, 10.0]);
        // A huge retry number neither overflows nor passes the cap.
        assert_eq!(p.base_backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_a_fifth_either_way() {
        let p = policy(10, 1.0, 100.0);
        for retry in 1..=4 {
            let base = p.base_backoff(retry).as_secs_f64();
            for _ in 0..200 {
                let wait = p.wait(retry, None).as_secs_f64();
                assert!((base * 0.8 - 1e-9..=base * 1.2 + 1e-9).contains(&wait), "{wait} for base {base}");
            }
        }
    }

    #[test]
    fn retry_after_wins_only_when_longer_and_is_capped() {
        let p = policy(10, 1.0, 100.0);
        assert!(p.wait(1, Some(Duration::from_secs(30))) == Duration::from_secs(30));
        assert!(p.wait(1, Some(Duration::ZERO)) <= Duration::from_secs_f64(1.2));
        assert_eq!(p.wait(1, Some(Duration::from_secs(86_400))), MAX_RETRY_AFTER);
    }

    #[test]
    fn what_is_retried() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_retryable(Some(status), false), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 410, 422, 301] {
            assert!(!is_retryable(Some(status), false), "{status}");
        }
        assert!(is_retryable(None, true), "connection error or timeout");
        assert!(is_retryable(Some(200), true), "a 2xx whose body was cut short");
        assert!(!is_retryable(None, false), "a call the target policy refused");
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 10:01:30 GMT", now), Some(Duration::from_secs(90)));
        // RFC 850 and asctime forms are HTTP dates too.
        assert_eq!(parse_retry_after("Wednesday, 25-Nov-26 10:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 09:00:00 GMT", now), Some(Duration::ZERO), "in the past");
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(policy(1, 1.0, 1.0).validate().is_ok());
        assert_eq!(policy(0, 1.0, 1.0).validate().unwrap_err().0, "max_attempts");
        assert_eq!(policy(MAX_ATTEMPTS + 1, 1.0, 1.0).validate().unwrap_err().0, "max_attempts");
        assert_eq!(policy(3, 0.0, 1.0).validate().unwrap_err().0, "backoff_seconds");
        assert_eq!(policy(3, f64::NAN, 1.0).validate().unwrap_err().0, "backoff_seconds");
        assert_eq!(policy(3, 2.0, 1.0).validate().unwrap_err().0, "max_backoff_seconds");
        assert_eq!(policy(3, 2.0, 1e9).validate().unwrap_err().0, "max_backoff_seconds");
    }
}
