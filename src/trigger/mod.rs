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
pub mod exclude;
pub mod interval;
pub mod time;
pub mod wall;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::calendar::{CalendarLookup, CompiledCalendar, NoCalendars};

pub use calendar::{CalendarIntervalSpec, CalendarIntervalTrigger};
pub use combine::{CombineSpec, CombiningTrigger};
pub use cron::{CronSpec, CronTrigger};
pub use date::{DateSpec, DateTrigger};
pub use exclude::ExcludingTrigger;
pub use interval::{IntervalSpec, IntervalTrigger};

/// When a job fires: one of APScheduler's triggers, chosen by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
// `remote = "Self"`: the derives become inherent functions that the trait impls below wrap, to refuse a tag
// serde alone would read.
#[serde(remote = "Self", tag = "type", rename_all = "lowercase")]
// A spec lives only while a request or a stored row is handled; boxing the larger ones would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum TriggerSpec {
    /// Fires once, at `run_date`.
    Date(DateSpec),
    /// Fires at a fixed interval.
    Interval(IntervalSpec),
    /// Fires at the times that match cron fields or a crontab line.
    Cron(CronSpec),
    /// Fires at a time of day every so many years, months, weeks and days.
    #[serde(rename = "calendarinterval")]
    CalendarInterval(CalendarIntervalSpec),
    /// Fires at the times all child triggers share.
    And(CombineSpec),
    /// Fires at every fire time of any child trigger.
    Or(CombineSpec),
}

impl Serialize for TriggerSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TriggerSpec::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for TriggerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        // serde takes a variant's index for its tag (`"type": 0` would be `date`); only the names are the API.
        if let Some(tag) = value.get("type")
            && !tag.is_string()
        {
            return Err(D::Error::custom(format!(
                "{NESTED_PATH_PREFIX}type`: {tag} is not a trigger's name (date, interval, cron, calendarinterval, and, or)"
            )));
        }
        // The buffered value hides the path inside the trigger from the caller's tracker: it travels in the message.
        struct Derived(TriggerSpec);
        impl<'de> Deserialize<'de> for Derived {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                TriggerSpec::deserialize(deserializer).map(Derived)
            }
        }
        serde_path_to_error::deserialize::<_, Derived>(value).map(|derived| derived.0).map_err(|err| {
            let path = err.path().to_string();
            let message = err.into_inner().to_string();
            D::Error::custom(nested_error(&path, &message))
        })
    }
}

/// How a data error inside a trigger names where it is: `at `triggers[0].type`: …` (the API reads it back into the
/// field it reports).
pub const NESTED_PATH_PREFIX: &str = "at `";

/// `message`, an error at `path` inside a trigger, with its path joined to any a nested trigger's message carries.
pub(crate) fn nested_error(path: &str, message: &str) -> String {
    let (inner, rest) = split_nested_path(message);
    let joined = match (path, inner) {
        (".", None) => return message.to_string(),
        (".", Some(inner)) => inner.to_string(),
        (path, None) => path.to_string(),
        (path, Some(inner)) => format!("{path}.{inner}"),
    };
    format!("{NESTED_PATH_PREFIX}{joined}`: {rest}")
}

/// The path a trigger's data error carries, and the rest of its message.
pub fn split_nested_path(message: &str) -> (Option<&str>, &str) {
    message
        .strip_prefix(NESTED_PATH_PREFIX)
        .and_then(|rest| rest.split_once("`: "))
        .map_or((None, message), |(path, rest)| (Some(path), rest))
}

/// What is wrong with a trigger: `field` is the path inside the trigger (`minute`, `triggers[1].hour`),
/// `message` names the value and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TriggerError {
    /// Where in the trigger: `minute`, `triggers[1].hour`.
    pub field: String,
    /// The value and the rule it breaks.
    pub message: String,
}

impl TriggerError {
    /// An error at `field`.
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
    /// A compiled `date` trigger.
    Date(DateTrigger),
    /// A compiled `interval` trigger.
    Interval(IntervalTrigger),
    /// A compiled `cron` trigger.
    Cron(CronTrigger),
    /// A compiled `calendarinterval` trigger.
    CalendarInterval(CalendarIntervalTrigger),
    /// A compiled `and` trigger.
    And(CombiningTrigger),
    /// A compiled `or` trigger.
    Or(CombiningTrigger),
    /// A trigger with `exclude_calendars`: its fire times minus the calendars' periods.
    Excluding(ExcludingTrigger),
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

    /// Validate and compile, without calendars: a trigger that names any in `exclude_calendars` is refused.
    pub fn compile(&self, default_tz: Tz) -> Result<Trigger, TriggerError> {
        self.compile_with(default_tz, &NoCalendars)
    }

    /// Validate and compile. `default_tz` is the scheduler's zone, used when the spec names none; `calendars` are
    /// what `exclude_calendars` (here and in children) may name.
    pub fn compile_with(&self, default_tz: Tz, calendars: &dyn CalendarLookup) -> Result<Trigger, TriggerError> {
        let trigger = match self {
            TriggerSpec::Date(spec) => Trigger::Date(spec.compile(default_tz)?),
            TriggerSpec::Interval(spec) => Trigger::Interval(spec.compile(default_tz)?),
            TriggerSpec::Cron(spec) => Trigger::Cron(spec.compile(default_tz)?),
            TriggerSpec::CalendarInterval(spec) => Trigger::CalendarInterval(spec.compile(default_tz)?),
            TriggerSpec::And(spec) => Trigger::And(spec.compile(default_tz, combine::Mode::And, calendars)?),
            TriggerSpec::Or(spec) => Trigger::Or(spec.compile(default_tz, combine::Mode::Or, calendars)?),
        };
        let ids = self.exclude_calendars();
        if ids.is_empty() {
            return Ok(trigger);
        }
        let found = ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                calendars.calendar(id).ok_or_else(|| {
                    TriggerError::new(format!("exclude_calendars[{index}]"), format!("no calendar has id {id:?}"))
                })
            })
            .collect::<Result<Vec<Arc<CompiledCalendar>>, TriggerError>>()?;
        Ok(Trigger::Excluding(ExcludingTrigger { inner: Box::new(trigger), calendars: found }))
    }

    /// The calendars this trigger itself names (not its children's).
    pub fn exclude_calendars(&self) -> &[String] {
        match self {
            TriggerSpec::Date(spec) => &spec.exclude_calendars,
            TriggerSpec::Interval(spec) => &spec.exclude_calendars,
            TriggerSpec::Cron(spec) => &spec.exclude_calendars,
            TriggerSpec::CalendarInterval(spec) => &spec.exclude_calendars,
            TriggerSpec::And(spec) | TriggerSpec::Or(spec) => &spec.exclude_calendars,
        }
    }

    /// Every calendar this trigger or any child names, each once, in order of appearance.
    pub fn calendar_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        let mut stack = vec![self];
        while let Some(spec) = stack.pop() {
            for id in spec.exclude_calendars() {
                if !ids.contains(&id.as_str()) {
                    ids.push(id);
                }
            }
            if let TriggerSpec::And(combine) | TriggerSpec::Or(combine) = spec {
                stack.extend(combine.triggers.iter().rev());
            }
        }
        ids
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
            Trigger::Excluding(t) => t.next_fire_time(previous, now),
        }
    }

    /// The first fire time at or after `t`, on the trigger's own schedule. For interval, calendarinterval and cron
    /// that is exactly `next_fire_time(None, t)`; a date fires only at its run_date; a combination searches.
    pub fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Trigger::Date(date) => (date.run_date >= t).then_some(date.run_date),
            Trigger::And(combination) | Trigger::Or(combination) => combination.first_at_or_after(t),
            Trigger::Excluding(excluding) => excluding.first_at_or_after(t),
            other => other.next_fire_time(None, t),
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
            Trigger::Excluding(t) => t.inner.timezone(),
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
            Trigger::Excluding(t) => t.inner.jitter_seconds(),
        }
    }
}

/// Largest preview a client may ask for (`count` is 1–1000).
pub const MAX_PREVIEW_COUNT: usize = 1000;

/// apsched's preview semantics: the first fire time from `now` with no previous fire, then each next one after
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
