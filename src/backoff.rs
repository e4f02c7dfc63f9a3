//! Exponential backoff: the wait before each new try of something failing, growing by a factor up to a cap, with
//! optional jitter. The one schedule every retry loop uses: a webhook's retry policy, the scheduler riding out a
//! store outage, the PostgreSQL listener reconnecting.

use std::time::Duration;

use rand::Rng;

/// What most retry loops want: each wait twice the one before.
const DOUBLING: f64 = 2.0;

/// The waits between tries: `initial`, then `factor` times the last wait, capped at `max`, each with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    /// Each wait is scaled by a random factor in [1 − jitter, 1 + jitter] (after the cap), so callers that failed
    /// together do not try again together.
    jitter: f64,
    /// Waits handed out by `next_wait` since the last `reset`.
    taken: u32,
}

impl Backoff {
    /// Waits of `initial`, then twice that, and so on up to `max`; no jitter.
    pub const fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, factor: DOUBLING, jitter: 0.0, taken: 0 }
    }

    /// Grow by `factor` (at least 1) instead of doubling.
    pub const fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = factor;
        self
    }

    /// Scale each wait by a random factor in [1 − `jitter`, 1 + `jitter`] (`jitter` in [0, 1]).
    pub const fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// The wait before try `n` after the first failure (0-based) without jitter: `min(initial·factor^n, max)`.
    pub fn base(&self, n: u32) -> Duration {
        let exponent = i32::try_from(n).unwrap_or(i32::MAX);
        // In nanoseconds, which f64 holds exactly up to 104 days; infinite once it overflows, which the cap turns
        // into `max`.
        let grown = self.initial.as_nanos() as f64 * self.factor.powi(exponent);
        if grown >= self.max.as_nanos() as f64 { self.max } else { Duration::from_nanos(grown as u64) }
    }

    /// The wait before try `n` (0-based), jittered.
    pub fn wait(&self, n: u32) -> Duration {
        let base = self.base(n);
        if self.jitter > 0.0 {
            base.mul_f64(rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter))
        } else {
            base
        }
    }

    /// The next wait; the one after is longer, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.wait(self.taken);
        self.taken = self.taken.saturating_add(1);
        wait
    }

    /// Start again from `initial`, after a success.
    pub fn reset(&mut self) {
        self.taken = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_the_factor_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..5).map(|_| backoff.next_wait()).collect();
        let millis = |ms: &[u64]| ms.iter().map(|ms| Duration::from_millis(*ms)).collect::<Vec<_>>();
        assert_eq!(waits, millis(&[200, 400, 800, 1000, 1000]));
        backoff.reset();
        assert_eq!(backoff.next_wait(), Duration::from_millis(200));

        let tripling = Backoff::new(Duration::from_secs(1), Duration::from_secs(100)).with_factor(3.0);
        assert_eq!((0..4).map(|n| tripling.base(n).as_secs()).collect::<Vec<_>>(), [1, 3, 9, 27]);
    }

    #[test]
    fn a_huge_try_number_neither_overflows_nor_passes_the_cap() {
        let backoff = Backoff::new(Duration::from_nanos(1), Duration::from_secs(10)).with_factor(1.000_001);
        assert_eq!(backoff.base(u32::MAX), Duration::from_secs(10));
        let mut taken = Backoff { taken: u32::MAX, ..backoff };
        assert_eq!(taken.next_wait(), Duration::from_secs(10));
        assert_eq!(taken.next_wait(), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_its_fraction_either_way() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(100)).with_jitter(0.2);
        for n in 0..4 {
            let base = backoff.base(n).as_secs_f64();
            for _ in 0..200 {
                let wait = backoff.wait(n).as_secs_f64();
                assert!((base * 0.8 - 1e-9..=base * 1.2 + 1e-9).contains(&wait), "{wait} for base {base}");
            }
        }
    }
}
