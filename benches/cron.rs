//! `next_fire_time` of the cron trigger on a dense and a sparse expression, chained as the scheduler chains it
//! (each fire fed back as `previous`). `bench/cron_compare.sh` runs this beside APScheduler's CronTrigger
//! (`bench/cron_apscheduler.py`, same expressions, zone and chaining) and prints the ratio.

use std::hint::black_box;

use apsched::trigger::{CronSpec, CronTrigger};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use criterion::{Criterion, criterion_group, criterion_main};

/// Both benchmarks start here and restart after this many chained fires, so the sparse chain (one fire a year)
/// never runs into the year limit and both sides walk the same stretch of time.
const START: &str = "2026-01-01T00:00:00Z";
const CHAIN_LENGTH: usize = 1000;
const ZONE: &str = "Europe/Berlin";

fn trigger(fields: serde_json::Value) -> CronTrigger {
    let mut fields = fields;
    fields["timezone"] = ZONE.into();
    serde_json::from_value::<CronSpec>(fields).expect("a cron spec").compile(Tz::UTC).expect("a valid cron spec")
}

fn chained(c: &mut Criterion, name: &str, trigger: &CronTrigger) {
    let start: DateTime<Utc> = START.parse().expect("an RFC 3339 instant");
    c.bench_function(name, |b| {
        let mut previous: Option<DateTime<Utc>> = None;
        let mut chained = 0;
        b.iter(|| {
            if chained == CHAIN_LENGTH {
                (previous, chained) = (None, 0);
            }
            let now = previous.unwrap_or(start);
            previous = black_box(trigger.next_fire_time(black_box(previous), now));
            chained += 1;
        })
    });
}

fn benches(c: &mut Criterion) {
    chained(c, "cron_dense_every_5_seconds", &trigger(serde_json::json!({"second": "*/5"})));
    chained(
        c,
        "cron_sparse_last_friday_of_february",
        &trigger(serde_json::json!({"month": "feb", "day": "last fri", "hour": 3})),
    );
}

criterion_group!(cron, benches);
criterion_main!(cron);
