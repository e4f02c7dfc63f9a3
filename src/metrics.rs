//! Prometheus metrics, written by hand in the text exposition format (0.0.4): a handful of counters and two
//! histograms need no registry crate. Counters live here; gauges (jobs per store, pool occupancy) are read at
//! scrape time from their owners. Every name is prefixed `apsched_` (DESIGN.md).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::action::http::Attempt;
use crate::executor::PoolStatus;
use crate::job::RunStatus;

/// Lateness (actual start − scheduled time): from "on time" (a few ms) to "held up for minutes".
const LATENESS_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// One attempt's HTTP call: fast internal hooks to the 30 s default timeout and a little beyond.
const DURATION_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// A pool gauge: its name, its help and how to read it from a pool's status.
type PoolGauge = (&'static str, &'static str, fn(&PoolStatus) -> usize);

struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; summed when rendered.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, value: f64) {
        if let Some(index) = self.bounds.iter().position(|bound| value <= *bound) {
            self.counts[index] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Default)]
struct Counters {
    /// Ledger rows created by claims and run-now, by status at creation (pending, missed, skipped, coalesced).
    fires: BTreeMap<&'static str, u64>,
    /// HTTP attempts by the class of their answer (`2xx`…`5xx`, or `none` when no answer came).
    attempts: BTreeMap<&'static str, u64>,
    /// Runs whose delivery ended, by outcome (succeeded, failed).
    deliveries: BTreeMap<&'static str, u64>,
    retries: u64,
    pruned: u64,
}

pub struct Metrics {
    counters: Mutex<Counters>,
    lateness: Mutex<Histogram>,
    duration: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            counters: Mutex::new(Counters::default()),
            lateness: Mutex::new(Histogram::new(&LATENESS_BUCKETS)),
            duration: Mutex::new(Histogram::new(&DURATION_BUCKETS)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    }
}

/// Gauges read at scrape time.
pub struct Snapshot<'a> {
    /// Jobs per store; a store that could not be counted is left out.
    pub jobs: &'a [(String, u64)],
    pub pools: &'a BTreeMap<String, PoolStatus>,
}

impl Metrics {
    pub fn fire(&self, status: RunStatus) {
        *lock(&self.counters).fires.entry(status.as_str()).or_default() += 1;
    }

    /// One attempt: its answer class and how long the call took.
    pub fn attempt(&self, attempt: &Attempt) {
        // A 2xx whose body was cut short got no complete answer.
        let class = if attempt.transport_failed { "none" } else { status_class(attempt.http_status) };
        *lock(&self.counters).attempts.entry(class).or_default() += 1;
        lock(&self.duration).observe(attempt.duration.as_secs_f64());
    }

    pub fn retry(&self) {
        lock(&self.counters).retries += 1;
    }

    pub fn delivered(&self, status: RunStatus) {
        *lock(&self.counters).deliveries.entry(status.as_str()).or_default() += 1;
    }

    /// Actual start − scheduled time of a run's first attempt; an early start (a clock step) counts as on time.
    pub fn lateness(&self, late: chrono::TimeDelta) {
        lock(&self.lateness).observe(late.to_std().unwrap_or(Duration::ZERO).as_secs_f64());
    }

    pub fn pruned(&self, runs: u64) {
        lock(&self.counters).pruned += runs;
    }

    /// The exposition text.
    pub fn render(&self, snapshot: &Snapshot<'_>) -> String {
        let mut out = String::new();
        {
            let counters = lock(&self.counters);
            family(
                &mut out,
                "apsched_fires_total",
                "counter",
                "Fires recorded in the run ledger, by status.",
                "status",
                &counters.fires,
            );
            family(
                &mut out,
                "apsched_delivery_attempts_total",
                "counter",
                "HTTP attempts, by the class of their answer (none: no complete answer).",
                "status_class",
                &counters.attempts,
            );
            family(
                &mut out,
                "apsched_deliveries_total",
                "counter",
                "Runs whose delivery ended, by outcome.",
                "outcome",
                &counters.deliveries,
            );
            single(
                &mut out,
                "apsched_retries_total",
                "counter",
                "Attempts scheduled again after a retryable failure.",
                counters.retries,
            );
            single(
                &mut out,
                "apsched_runs_pruned_total",
                "counter",
                "Finished runs deleted by retention.",
                counters.pruned,
            );
        }
        lock(&self.lateness).render(
            &mut out,
            "apsched_delivery_lateness_seconds",
            "Actual start of a run's first attempt minus its scheduled time.",
        );
        lock(&self.duration).render(&mut out, "apsched_delivery_duration_seconds", "Duration of one HTTP attempt.");

        let jobs: BTreeMap<&str, u64> = snapshot.jobs.iter().map(|(store, count)| (store.as_str(), *count)).collect();
        family(&mut out, "apsched_jobs", "gauge", "Jobs per job store.", "jobstore", &jobs);
        let pool_gauges: [PoolGauge; 4] = [
            ("apsched_executor_max_workers", "Size of each delivery pool.", |p| p.max_workers),
            ("apsched_executor_running", "Deliveries holding a worker.", |p| p.running),
            ("apsched_executor_queued", "Deliveries waiting for a worker.", |p| p.queued),
            ("apsched_executor_retrying", "Runs waiting between two attempts (holding no worker).", |p| p.retrying),
        ];
        for (name, help, read) in pool_gauges {
            let values: BTreeMap<&str, u64> =
                snapshot.pools.iter().map(|(pool, status)| (pool.as_str(), read(status) as u64)).collect();
            family(&mut out, name, "gauge", help, "executor", &values);
        }
        out
    }
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

fn family<K: AsRef<str>>(out: &mut String, name: &str, kind: &str, help: &str, label: &str, values: &BTreeMap<K, u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (value, count) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {count}", escape(value.as_ref()));
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_labelled() {
        let metrics = Metrics::default();
        metrics.lateness(chrono::TimeDelta::milliseconds(3));
        metrics.lateness(chrono::TimeDelta::milliseconds(700));
        metrics.lateness(chrono::TimeDelta::seconds(-1));
        metrics.lateness(chrono::TimeDelta::hours(1));
        metrics.fire(RunStatus::Pending);
        metrics.fire(RunStatus::Pending);
        metrics.fire(RunStatus::Missed);
        let pools = BTreeMap::from([(
            "default".to_string(),
            PoolStatus { max_workers: 10, running: 1, queued: 2, retrying: 3 },
        )]);
        let text = metrics.render(&Snapshot { jobs: &[("a\"b".to_string(), 4)], pools: &pools });
        for line in [
            "apsched_delivery_lateness_seconds_bucket{le=\"0.005\"} 2",
            "apsched_delivery_lateness_seconds_bucket{le=\"1\"} 3",
            "apsched_delivery_lateness_seconds_bucket{le=\"300\"} 3",
            "apsched_delivery_lateness_seconds_bucket{le=\"+Inf\"} 4",
            "apsched_delivery_lateness_seconds_count 4",
            "apsched_fires_total{status=\"pending\"} 2",
            "apsched_fires_total{status=\"missed\"} 1",
            "apsched_jobs{jobstore=\"a\\\"b\"} 4",
            "apsched_executor_retrying{executor=\"default\"} 3",
            "apsched_retries_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
