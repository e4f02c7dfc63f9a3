//! `and` / `or`: a trigger made of child triggers. An `or` fires at every fire time of any child (equal times
//! merged), an `and` at every time all children share. Unlike APScheduler's combining triggers, which pass the
//! combination's previous fire time to every child, each child here keeps its own schedule: a child's "next
//! fire" is always the first point of its own grid after a time, so an interval child stays on its grid and a
//! date child is not forgotten after another child fired. An `and` whose children share no time within
//! `MAX_AND_STEPS` rounds ends, where APScheduler 3.11 would loop forever.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::interval::{serialize_number, validate_jitter};
use super::time::parse_timezone;
use super::{Trigger, TriggerError, TriggerSpec};
use crate::calendar::CalendarLookup;

/// How many rounds an `and` spends moving its children towards a shared time before it concludes there is none.
pub const MAX_AND_STEPS: usize = 10_000;

/// Fire times are compared at full precision; the instant just after one is one nanosecond later.
const JUST_AFTER: TimeDelta = TimeDelta::nanoseconds(1);

/// How a combining trigger joins its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// At the times all children share.
    And,
    /// At every fire time of any child.
    Or,
}

/// Child triggers combined: `and` fires at the times all of them share, `or` at every fire time of any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CombineSpec {
    /// At least one child; children without their own `timezone` take this trigger's.
    #[schema(no_recursion)]
    #[serde(deserialize_with = "children")]
    pub triggers: Vec<TriggerSpec>,
    /// IANA zone of the children that name none, and of the fire times; the scheduler's zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Up to this many seconds of random delay added to each fire.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub jitter: Option<f64>,
    /// Calendars whose periods are not fire times: ids of calendars (`PUT /v1/calendars/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_calendars: Vec<String>,
}

/// The children, each error naming its child (`triggers[1].type`): serde buffers a tagged trigger's content, and
/// the path inside it would be lost.
fn children<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<TriggerSpec>, D::Error> {
    use serde::de::Error;
    let values = Vec::<serde_json::Value>::deserialize(deserializer)?;
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            <TriggerSpec as Deserialize>::deserialize(value)
                .map_err(|err| D::Error::custom(super::nested_error(&format!("triggers[{index}]"), &err.to_string())))
        })
        .collect()
}

/// A compiled `and` or `or` trigger.
#[derive(Debug, Clone)]
pub struct CombiningTrigger {
    /// `and` or `or`.
    pub mode: Mode,
    /// The compiled children.
    pub triggers: Vec<Trigger>,
    /// The zone fire times are written in.
    pub timezone: Tz,
    /// Up to this many seconds of random delay added to each fire.
    pub jitter: Option<f64>,
}

fn child_field(index: usize) -> String {
    format!("triggers[{index}]")
}

impl CombineSpec {
    /// Resolve every child in this trigger's zone. Idempotent, as each child's resolution is.
    pub fn resolve(mut self, default_tz: Tz, now: DateTime<Utc>) -> Result<Self, TriggerError> {
        let timezone = parse_timezone(self.timezone.as_deref(), default_tz)?;
        self.triggers = std::mem::take(&mut self.triggers)
            .into_iter()
            .enumerate()
            .map(|(index, child)| child.resolve(timezone, now).map_err(|err| err.within(&child_field(index))))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Check the spec and compile it as `mode`; `default_tz` is its zone when it names none.
    pub fn compile(
        &self,
        default_tz: Tz,
        mode: Mode,
        calendars: &dyn CalendarLookup,
    ) -> Result<CombiningTrigger, TriggerError> {
        let timezone = parse_timezone(self.timezone.as_deref(), default_tz)?;
        let jitter = validate_jitter(self.jitter)?;
        // APScheduler accepts an empty list, then never fires (`or`) or fails on first use (`and`); one child is
        // allowed, as there, since it is well defined.
        if self.triggers.is_empty() {
            return Err(TriggerError::new("triggers", "[] is empty: give at least one trigger"));
        }
        let triggers = self
            .triggers
            .iter()
            .enumerate()
            .map(|(index, child)| {
                child.compile_with(timezone, calendars).map_err(|err| err.within(&child_field(index)))
            })
            .collect::<Result<_, _>>()?;
        Ok(CombiningTrigger { mode, triggers, timezone, jitter })
    }
}

impl CombiningTrigger {
    /// With no previous fire, the combination starts at its children's earliest first fire (so a past `date`
    /// child is due at once, as in APScheduler's OrTrigger) and takes the first shared time from there for an
    /// `and`; after a previous fire, the first fire of the combination after it.
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match previous {
            Some(previous) => self.first_at_or_after(previous.checked_add_signed(JUST_AFTER)?),
            None => {
                let firsts = self.triggers.iter().map(|child| child.next_fire_time(None, now));
                let earliest = match self.mode {
                    // Every child must be able to fire for an `and` to fire.
                    Mode::And => firsts.collect::<Option<Vec<_>>>()?.into_iter().min()?,
                    Mode::Or => firsts.flatten().min()?,
                };
                self.first_at_or_after(earliest)
            }
        }
    }

    /// The combination's first fire time at or after `t`.
    pub(super) fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.mode {
            Mode::Or => self.triggers.iter().filter_map(|child| first_at_or_after(child, t)).min(),
            Mode::And => self.first_shared_at_or_after(t),
        }
    }

    /// Move every child that lags behind the latest candidate up to it, until all agree or one ends.
    fn first_shared_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut candidates: Vec<DateTime<Utc>> =
            self.triggers.iter().map(|child| first_at_or_after(child, t)).collect::<Option<_>>()?;
        for _ in 0..MAX_AND_STEPS {
            let latest = *candidates.iter().max()?;
            if candidates.iter().all(|&candidate| candidate == latest) {
                return Some(latest);
            }
            for (child, candidate) in self.triggers.iter().zip(candidates.iter_mut()) {
                if *candidate < latest {
                    *candidate = first_at_or_after(child, latest)?;
                }
            }
        }
        None
    }
}

/// A trigger's first fire time at or after `t`, on its own schedule (see `Trigger::first_at_or_after`).
fn first_at_or_after(trigger: &Trigger, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    trigger.first_at_or_after(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{preview, time::format_time};

    fn compile(json: &str) -> Result<Trigger, TriggerError> {
        let now = at("2026-01-01T00:00:00Z");
        serde_json::from_str::<TriggerSpec>(json).unwrap().resolve(Tz::UTC, now)?.compile(Tz::UTC)
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    fn fires(json: &str, now: &str, count: usize) -> Vec<String> {
        let trigger = compile(json).unwrap();
        let tz = trigger.timezone();
        preview(&trigger, at(now), count).into_iter().map(|t| format_time(t, tz)).collect()
    }

    #[test]
    fn or_merges_children_and_keeps_each_on_its_own_schedule() {
        let json = r#"{"type": "or", "triggers": [
            {"type": "interval", "hours": 2, "start_date": "2026-01-01T00:00:00Z"},
            {"type": "interval", "hours": 3, "start_date": "2026-01-01T00:00:00Z"},
            {"type": "date", "run_date": "2026-01-01T05:00:00Z"}]}"#;
        let times = fires(json, "2026-01-01T00:30:00Z", 6);
        // 2, 3, 4, 5 (the date, not forgotten), 6 (shared, merged), 8.
        let hours: Vec<&str> = times.iter().map(|t| &t[11..13]).collect();
        assert_eq!(hours, ["02", "03", "04", "05", "06", "08"]);
    }

    #[test]
    fn and_fires_only_at_shared_times() {
        let json = r#"{"type": "and", "triggers": [
            {"type": "interval", "hours": 4, "start_date": "2026-01-01T00:00:00Z"},
            {"type": "interval", "hours": 6, "start_date": "2026-01-01T00:00:00Z"}]}"#;
        let times = fires(json, "2026-01-01T00:30:00Z", 3);
        assert_eq!(times, ["2026-01-01T12:00:00+00:00", "2026-01-02T00:00:00+00:00", "2026-01-02T12:00:00+00:00"]);
    }

    #[test]
    fn and_with_calendar_and_interval_children() {
        // Every day at 09:00 and every 36 hours from 2026-01-01 09:00: shared every third day.
        let json = r#"{"type": "and", "timezone": "Europe/Berlin", "triggers": [
            {"type": "calendarinterval", "days": 1, "hour": 9, "start_date": "2026-01-01"},
            {"type": "interval", "hours": 36, "start_date": "2026-01-01 09:00:00"}]}"#;
        let times = fires(json, "2026-01-01T00:00:00Z", 3);
        assert_eq!(times, ["2026-01-01T09:00:00+01:00", "2026-01-04T09:00:00+01:00", "2026-01-07T09:00:00+01:00"]);
    }

    #[test]
    fn and_that_never_agrees_ends_instead_of_hanging() {
        let json = r#"{"type": "and", "triggers": [
            {"type": "interval", "hours": 2, "start_date": "2026-01-01T00:00:00Z"},
            {"type": "interval", "hours": 2, "start_date": "2026-01-01T01:00:00Z"}]}"#;
        assert!(fires(json, "2026-01-01T00:00:00Z", 3).is_empty());
        let json = r#"{"type": "and", "triggers": [
            {"type": "date", "run_date": "2026-01-01T01:00:00Z"},
            {"type": "interval", "hours": 2, "start_date": "2026-01-01T00:00:00Z"}]}"#;
        assert!(fires(json, "2026-01-01T00:00:00Z", 3).is_empty());
    }

    #[test]
    fn and_over_walked_calendar_grids_ends_quickly() {
        // Rounds jump two years at a time until the calendar grids end in 9999; each round must stay cheap.
        let json = r#"{"type": "and", "timezone": "Australia/Lord_Howe", "triggers": [
            {"type": "interval", "hours": 96, "start_date": "2026-09-30T03:30:00+10:30"},
            {"type": "calendarinterval", "years": 2, "hour": 3, "minute": 30, "start_date": "2026-09-30"},
            {"type": "calendarinterval", "weeks": 2, "months": 5, "hour": 3, "minute": 30, "start_date": "2026-09-30"}]}"#;
        let started = std::time::Instant::now();
        let times = fires(json, "2026-10-02T23:19:45Z", 20);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
        // The first two meet every 16 years; the third never joins them before the grids end.
        assert!(times.is_empty(), "{times:?}");
    }

    #[test]
    fn a_past_date_child_is_due_at_once() {
        let json = r#"{"type": "or", "triggers": [
            {"type": "date", "run_date": "2025-12-31T00:00:00Z"},
            {"type": "calendarinterval", "days": 1, "hour": 12, "start_date": "2026-01-01"}]}"#;
        let times = fires(json, "2026-01-01T00:00:00Z", 3);
        assert_eq!(times, ["2025-12-31T00:00:00+00:00", "2026-01-01T12:00:00+00:00", "2026-01-02T12:00:00+00:00"]);
    }

    #[test]
    fn nested_combinations_and_inherited_zones() {
        let json = r#"{"type": "or", "timezone": "America/New_York", "triggers": [
            {"type": "and", "triggers": [
                {"type": "calendarinterval", "days": 1, "hour": 8, "start_date": "2026-03-01"},
                {"type": "calendarinterval", "weeks": 1, "hour": 8, "start_date": "2026-03-01"}]},
            {"type": "date", "run_date": "2026-03-09 10:00:00"}]}"#;
        let times = fires(json, "2026-03-02T00:00:00Z", 3);
        assert_eq!(times, ["2026-03-08T08:00:00-04:00", "2026-03-09T10:00:00-04:00", "2026-03-15T08:00:00-04:00"]);
    }

    #[test]
    fn finishes_when_every_or_child_has_finished() {
        let json = r#"{"type": "or", "triggers": [
            {"type": "date", "run_date": "2026-01-02T00:00:00Z"},
            {"type": "interval", "days": 1, "start_date": "2026-01-01T00:00:00Z", "end_date": "2026-01-03T00:00:00Z"}]}"#;
        assert_eq!(fires(json, "2026-01-01T00:00:00Z", 10).len(), 3);
    }

    #[test]
    fn child_errors_carry_their_path() {
        let cases = [
            (r#"{"type": "or", "triggers": []}"#, "triggers", "[]"),
            (
                r#"{"type": "and", "triggers": [{"type": "date", "run_date": "2026-01-01"},
                    {"type": "calendarinterval", "days": 1, "hour": 25}]}"#,
                "triggers[1].hour",
                "25",
            ),
            (
                r#"{"type": "or", "triggers": [{"type": "and", "triggers": [{"type": "interval", "minutes": -1}]}]}"#,
                "triggers[0].triggers[0].minutes",
                "-1",
            ),
            (r#"{"type": "or", "triggers": [{"type": "date", "run_date": "x"}], "jitter": -2}"#, "jitter", "-2"),
            (r#"{"type": "or", "triggers": [], "timezone": "Mars/Base"}"#, "timezone", "Mars/Base"),
        ];
        for (json, field, named) in cases {
            let err = compile(json).unwrap_err();
            assert_eq!(err.field, field, "{json}");
            assert!(err.message.contains(named), "{json}: {}", err.message);
        }
    }
}
