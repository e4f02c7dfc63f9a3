//! Delivery rate limits (`[webhooks] rate_limit_per_second`, `per_target_rate_limit_per_second`): token buckets, one
//! for all deliveries and one per target host, so a job (or many) cannot make apsched flood a service. A delivery
//! over a limit waits for its turn; it is never dropped. Each bucket holds one second's worth of deliveries (at
//! least one), so a burst up to the rate goes out at once and a longer one is spread out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::WebhookSettings as WebhooksConfig;

/// Past this many idle per-target buckets, full ones are forgotten: a full bucket is the same as a new one.
const MAX_TRACKED_TARGETS: usize = 10_000;

#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    /// May go negative: deliveries that reserved a future turn.
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        let capacity = rate.max(1.0);
        Bucket { rate, capacity, tokens: capacity, updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// Take a token now and say how long to wait until it is really available.
    fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.rate) }
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

#[derive(Debug, Default)]
pub struct RateLimits {
    global: Option<Mutex<Bucket>>,
    per_target_rate: Option<f64>,
    per_target: Mutex<HashMap<String, Bucket>>,
}

impl RateLimits {
    pub fn new(config: &WebhooksConfig) -> RateLimits {
        let now = Instant::now();
        RateLimits {
            global: config.rate_limit_per_second.map(|rate| Mutex::new(Bucket::new(rate, now))),
            per_target_rate: config.per_target_rate_limit_per_second,
            per_target: Mutex::new(HashMap::new()),
        }
    }

    /// How long a delivery to `url` must wait for its turn; the turn is taken.
    pub fn reserve(&self, url: &str) -> Duration {
        let now = Instant::now();
        let global = self.global.as_ref().map_or(Duration::ZERO, |bucket| {
            bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reserve(now)
        });
        let target = match self.per_target_rate {
            Some(rate) => {
                let key = target_key(url);
                let mut buckets = self.per_target.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if buckets.len() >= MAX_TRACKED_TARGETS {
                    buckets.retain(|_, bucket| !bucket.is_full(now));
                }
                buckets.entry(key).or_insert_with(|| Bucket::new(rate, now)).reserve(now)
            }
            None => Duration::ZERO,
        };
        global.max(target)
    }

    /// Wait for a delivery's turn.
    pub async fn acquire(&self, url: &str) {
        let wait = self.reserve(url);
        if !wait.is_zero() {
            tracing::debug!(wait = ?wait, "delivery rate limited");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The host and port a URL calls: what "one target" means for the per-target limit.
fn target_key(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(url) => format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0)),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: Option<f64>, per_target: Option<f64>) -> RateLimits {
        RateLimits::new(&WebhooksConfig {
            rate_limit_per_second: global,
            per_target_rate_limit_per_second: per_target,
            ..WebhooksConfig::default()
        })
    }

    #[test]
    fn a_burst_up_to_the_rate_goes_at_once_and_the_rest_is_spread() {
        let limits = limits(Some(2.0), None);
        assert_eq!(limits.reserve("http://a/"), Duration::ZERO);
        assert_eq!(limits.reserve("http://b/"), Duration::ZERO);
        let third = limits.reserve("http://c/");
        let fourth = limits.reserve("http://d/");
        assert!(third > Duration::from_millis(400) && third <= Duration::from_millis(500), "{third:?}");
        assert!(fourth > Duration::from_millis(900) && fourth <= Duration::from_secs(1), "{fourth:?}");
    }

    #[test]
    fn targets_have_their_own_buckets() {
        let limits = limits(None, Some(1.0));
        assert_eq!(limits.reserve("http://a:1/x"), Duration::ZERO);
        assert_eq!(limits.reserve("http://b:1/x"), Duration::ZERO);
        assert!(limits.reserve("http://a:1/y") > Duration::from_millis(900));
        assert_eq!(limits.reserve("http://a:2/x"), Duration::ZERO);
    }

    #[test]
    fn no_limits_never_wait() {
        let limits = limits(None, None);
        assert!((0..1000).all(|_| limits.reserve("http://a/").is_zero()));
    }
}
