//! Delivery rate limits (`[webhooks] rate_limit_per_second`, `per_target_rate_limit_per_second`): governor's GCRA
//! limiters, one for all deliveries and one per target host and port, so a job (or many) cannot make apsched flood
//! a service. A delivery over a limit waits for its turn; it is never dropped. Each limit allows a burst of one
//! second's worth of deliveries (at least one), so a burst up to the rate goes out at once and a longer one is
//! spread out.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

use super::WebhookSettings;

/// Past this many per-target limiters, those back to a fresh state are forgotten: they are the same as new ones.
const MAX_TRACKED_TARGETS: usize = 10_000;

/// Governor reads time from tokio's clock, the one the waits sleep on (and the one tests pause and advance).
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

type Global = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<std::time::Instant>>;
type PerTarget = RateLimiter<String, DefaultKeyedStateStore<String>, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// Deliveries waiting for one limiter stand in line, first come first served, and only the head asks the limiter
/// again when it wakes: governor only says "not until", so waiters that all asked it would all wake at each turn.
type Line = tokio::sync::Mutex<()>;

pub(crate) struct RateLimits {
    global: Option<(Global, Line)>,
    per_target: Option<PerTarget>,
    /// One line per target; a line nobody stands in is dropped with its limiter's state.
    target_lines: Mutex<HashMap<String, Arc<Line>>>,
}

/// `rate` deliveries a second, a second's worth (at least one) at once.
fn quota(rate: f64) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(rate.min(f64::from(u32::MAX)) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).expect("a period of at least a nanosecond").allow_burst(burst)
}

impl RateLimits {
    pub fn new(config: &WebhookSettings) -> RateLimits {
        RateLimits {
            global: config
                .rate_limit_per_second
                .map(|rate| (RateLimiter::direct_with_clock(quota(rate), TokioClock), Line::default())),
            per_target: config
                .per_target_rate_limit_per_second
                .map(|rate| RateLimiter::dashmap_with_clock(quota(rate), TokioClock)),
            target_lines: Mutex::new(HashMap::new()),
        }
    }

    /// Wait for a delivery's turn, and take it. The target's turn comes first, so a delivery held up by its target
    /// does not spend a global turn that another target could have used.
    pub async fn acquire(&self, url: &str) {
        if let Some(limiter) = &self.per_target {
            let key = target_key(url);
            let line = self.target_line(&key, limiter);
            let _place = line.lock().await;
            wait_turn(|| limiter.check_key(&key)).await;
        }
        if let Some((limiter, line)) = &self.global {
            let _place = line.lock().await;
            wait_turn(|| limiter.check()).await;
        }
    }

    fn target_line(&self, key: &str, limiter: &PerTarget) -> Arc<Line> {
        let mut lines = self.target_lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() >= MAX_TRACKED_TARGETS {
            lines.retain(|_, line| Arc::strong_count(line) > 1);
            limiter.retain_recent();
        }
        lines.entry(key.to_string()).or_default().clone()
    }
}

/// Ask for a turn until it is given, sleeping until the limiter says one is free.
async fn wait_turn(mut ask: impl FnMut() -> Result<(), NotUntil<std::time::Instant>>) {
    while let Err(not_until) = ask() {
        let wait = not_until.wait_time_from(TokioClock.now());
        tracing::debug!(wait = ?wait, "delivery rate limited");
        tokio::time::sleep(wait).await;
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
    use tokio::time::Instant;

    use super::*;

    fn limits(global: Option<f64>, per_target: Option<f64>) -> Arc<RateLimits> {
        Arc::new(RateLimits::new(&WebhookSettings {
            rate_limit_per_second: global,
            per_target_rate_limit_per_second: per_target,
            ..WebhookSettings::default()
        }))
    }

    /// How long after `start` each of `urls`, all asking at once, got its turn (in the order they got it).
    async fn turns(limits: &Arc<RateLimits>, urls: &[&str]) -> Vec<Duration> {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for url in urls {
            let (limits, url) = (limits.clone(), url.to_string());
            tasks.spawn(async move {
                limits.acquire(&url).await;
                (start.elapsed(), url)
            });
        }
        let mut turns: Vec<(Duration, String)> = tasks.join_all().await;
        turns.sort();
        turns.into_iter().map(|(after, _)| after).collect()
    }

    /// Turns come at the whole milliseconds of the expected times (tokio's timer rounds a sleep up to the next one).
    fn assert_near(turns: &[Duration], expected_ms: &[u64]) {
        let rounded: Vec<u64> = turns.iter().map(|turn| turn.as_millis() as u64).collect();
        let close = rounded.len() == expected_ms.len()
            && rounded.iter().zip(expected_ms).all(|(got, want)| (*want..=want + 2).contains(got));
        assert!(close, "turns at {rounded:?} ms, expected about {expected_ms:?}");
    }

    // Time is tokio's paused clock, which jumps to the next timer when every task waits: the turns come at their
    // exact times, however loaded the machine.
    #[tokio::test(start_paused = true)]
    async fn a_burst_up_to_the_rate_goes_at_once_and_the_rest_is_spread() {
        let limits = limits(Some(2.0), None);
        let urls = ["http://a/", "http://b/", "http://c/", "http://d/", "http://e/"];
        assert_near(&turns(&limits, &urls).await, &[0, 0, 500, 1000, 1500]);
    }

    #[tokio::test(start_paused = true)]
    async fn targets_have_their_own_limits() {
        let limits = limits(None, Some(1.0));
        let urls = ["http://a:1/x", "http://b:1/x", "http://a:1/y", "http://a:2/x", "http://b:1/z"];
        assert_near(&turns(&limits, &urls).await, &[0, 0, 0, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn both_limits_apply_together() {
        let limits = limits(Some(3.0), Some(1.0));
        // Three targets fit the global burst; the fourth delivery waits for the global limit, the fifth for its
        // target's.
        let urls = ["http://a/", "http://b/", "http://c/", "http://d/", "http://a/again"];
        assert_near(&turns(&limits, &urls).await, &[0, 0, 0, 333, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_limits_never_wait() {
        let limits = limits(None, None);
        let urls = vec!["http://a/"; 1000];
        assert!(turns(&limits, &urls).await.iter().all(Duration::is_zero));
    }

    #[test]
    fn a_fractional_rate_still_lets_one_through_at_once() {
        let quota = quota(0.5);
        assert_eq!(quota.burst_size().get(), 1);
        assert_eq!(quota.replenish_interval(), Duration::from_secs(2));
        assert_eq!(self::quota(2.5).burst_size().get(), 2);
        assert_eq!(self::quota(1e12).replenish_interval(), Duration::from_nanos(1));
    }
}
