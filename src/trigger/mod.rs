//! Triggers decide *when* a job fires. Pure functions with no I/O: the scheduler, the API's preview and the
//! `apsched preview` command all call `Trigger::next_fire_time`.
//!
//! A trigger arrives as JSON (`TriggerSpec`), is *resolved* once when a job is saved (an interval without
//! `start_date` gets its start fixed at "now + interval", as APScheduler does) and *compiled* into a `Trigger`
//! whenever it is loaded. The stored form is always the resolved spec, so a restart compiles the same schedule.

pub mod calendar;
pub mod combine;
pub mod cron;
pub mod date;
pub mod interval;
pub mod time;
pub mod wall;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use calendar::{CalendarIntervalSpec, CalendarIntervalTrigger};
pub use combine::{CombineSpec, CombiningTrigger};
pub use cron::{CronSpec, CronTrigger};
pub use date::{DateSpec, DateTrigger};
pub use interval::{IntervalSpec, IntervalTrigger};

/// A trigger as clients send it and as it is stored (see docs/triggers.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
// A spec lives only while a request or a stored row is handled; boxing the larger ones would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum TriggerSpec {
    Date(DateSpec),
    Interval(IntervalSpec),
    Cron(CronSpec),
    #[serde(rename = "calendarinterval")]
    CalendarInterval(CalendarIntervalSpec),
    And(CombineSpec),
    Or(CombineSpec),
}

/// What is wrong with a trigger: `field` is the path inside the trigger (`minute`, `triggers[1].hour`),
/// `message` names the value and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TriggerError {
    pub field: String,
    pub message: String,
}

impl TriggerError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// Prefix the field path, for errors found inside a child trigger.
    pub fn within(self, parent: &str) -> Self {
        Self { field: format!("{parent}.{}", self.field), message: self.message }
    }
}

/// A compiled trigger, ready to compute fire times.
#[derive(Debug, Clone)]
pub enum Trigger {
    Date(DateTrigger),
    Interval(IntervalTrigger),
    Cron(CronTrigger),
    CalendarInterval(CalendarIntervalTrigger),
    And(CombiningTrigger),
    Or(CombiningTrigger),
}

impl TriggerSpec {
    /// Fix what APScheduler fixes when a trigger is created: an interval's `start_date` (now + interval) and a
    /// calendarinterval's `start_date` (today in its zone), recursively inside `and`/`or`. Idempotent.
    pub fn resolve(self, default_tz: Tz, now: DateTime<Utc>) -> Result<TriggerSpec, TriggerError> {
        Ok(match self {
            TriggerSpec::Interval(spec) => TriggerSpec::Interval(spec.resolve(default_tz, now)?),
            TriggerSpec::CalendarInterval(spec) => TriggerSpec::CalendarInterval(spec.resolve(default_tz, now)?),
            TriggerSpec::And(spec) => TriggerSpec::And(spec.resolve(default_tz, now)?),
            TriggerSpec::Or(spec) => TriggerSpec::Or(spec.resolve(default_tz, now)?),
            other => other,
        })
    }

    /// The zone a compiled trigger has, without compiling it (a cron trigger's tables are work); `default_tz` when
    /// the spec names none, or names one that does not parse (which `compile` refuses).
    pub fn timezone(&self, default_tz: Tz) -> Tz {
        let name = match self {
            TriggerSpec::Date(spec) => spec.timezone.as_deref(),
            TriggerSpec::Interval(spec) => spec.timezone.as_deref(),
            TriggerSpec::Cron(spec) => spec.timezone.as_deref(),
            TriggerSpec::CalendarInterval(spec) => spec.timezone.as_deref(),
            TriggerSpec::And(spec) | TriggerSpec::Or(spec) => spec.timezone.as_deref(),
        };
        time::parse_timezone(name, default_tz).unwrap_or(default_tz)
    }

    /// Validate and compile. `default_tz` is the scheduler's zone, used when the spec names none.
    pub fn compile(&self, default_tz: Tz) -> Result<Trigger, TriggerError> {
        Ok(match self {
            TriggerSpec::Date(spec) => Trigger::Date(spec.compile(default_tz)?),
            TriggerSpec::Interval(spec) => Trigger::Interval(spec.compile(default_tz)?),
            TriggerSpec::Cron(spec) => Trigger::Cron(spec.compile(default_tz)?),
            TriggerSpec::CalendarInterval(spec) => Trigger::CalendarInterval(spec.compile(default_tz)?),
            TriggerSpec::And(spec) => Trigger::And(spec.compile(default_tz, combine::Mode::And)?),
            TriggerSpec::Or(spec) => Trigger::Or(spec.compile(default_tz, combine::Mode::Or)?),
        })
    }
}

impl Trigger {
    /// APScheduler's `get_next_fire_time(previous, now)`: with no previous fire, the first fire time at or after
    /// `now` (for `date`, its run_date even when past); with one, the first fire time after `previous`.
    /// `None` when the trigger has finished. Jitter is not applied here (see `jitter_seconds`).
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Date(t) => t.next_fire_time(previous, now),
            Trigger::Interval(t) => t.next_fire_time(previous, now),
            Trigger::Cron(t) => t.next_fire_time(previous, now),
            Trigger::CalendarInterval(t) => t.next_fire_time(previous, now),
            Trigger::And(t) | Trigger::Or(t) => t.next_fire_time(previous, now),
        }
    }

    /// The zone fire times are written in.
    pub fn timezone(&self) -> Tz {
        match self {
            Trigger::Date(t) => t.timezone,
            Trigger::Interval(t) => t.timezone,
            Trigger::Cron(t) => t.timezone,
            Trigger::CalendarInterval(t) => t.timezone,
            Trigger::And(t) | Trigger::Or(t) => t.timezone,
        }
    }

    /// Seconds of random delay the caller adds to each fire; `None` for no jitter.
    pub fn jitter_seconds(&self) -> Option<f64> {
        match self {
            Trigger::Date(_) => None,
            Trigger::Interval(t) => t.jitter,
            Trigger::Cron(t) => t.jitter,
            Trigger::CalendarInterval(t) => t.jitter,
            Trigger::And(t) | Trigger::Or(t) => t.jitter,
        }
    }
}

/// Largest preview a client may ask for (docs/api.md: `count` 1–1000).
pub const MAX_PREVIEW_COUNT: usize = 1000;

/// The preview semantics of docs/api.md: the first fire time from `now` with no previous fire, then each next one after
/// the previous. Shorter than `count` when the trigger ends.
pub fn preview(trigger: &Trigger, now: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
    let mut times = Vec::with_capacity(count.min(MAX_PREVIEW_COUNT));
    let mut previous = None;
    while times.len() < count {
        let Some(next) = trigger.next_fire_time(previous, now) else { break };
        // A trigger must move forward; stop rather than loop if one ever does not.
        if previous.is_some_and(|p| next <= p) {
            break;
        }
        times.push(next);
        previous = Some(next);
    }
    times
}

#[cfg(test)]
mod timezone_tests {
    use super::*;

    #[test]
    fn a_specs_zone_is_the_zone_its_compiled_trigger_has() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let specs = [
            serde_json::json!({"type": "date", "run_date": "2030-01-01T00:00:00"}),
            serde_json::json!({"type": "date", "run_date": "2030-01-01T00:00:00", "timezone": "Asia/Tokyo"}),
            serde_json::json!({"type": "interval", "minutes": 5, "start_date": "2030-01-01T00:00:00"}),
            serde_json::json!({"type": "cron", "hour": 3, "timezone": "America/New_York"}),
            serde_json::json!({"type": "cron", "crontab": "0 3 * * *"}),
            serde_json::json!({"type": "calendarinterval", "days": 1, "timezone": "UTC"}),
            serde_json::json!({"type": "or", "timezone": "Australia/Sydney",
                               "triggers": [{"type": "cron", "hour": 1}, {"type": "cron", "hour": 2}]}),
            serde_json::json!({"type": "and", "triggers": [{"type": "cron", "hour": 1, "timezone": "UTC"}]}),
        ];
        for spec in specs {
            let spec: TriggerSpec = serde_json::from_value(spec.clone()).unwrap_or_else(|err| panic!("{spec}: {err}"));
            let spec = spec.resolve(berlin, Utc::now()).unwrap();
            let compiled = spec.compile(berlin).unwrap_or_else(|err| panic!("{spec:?}: {err}"));
            assert_eq!(spec.timezone(berlin), compiled.timezone(), "{spec:?}");
        }
    }
}
