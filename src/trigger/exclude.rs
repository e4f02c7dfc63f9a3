//! `exclude_calendars`: any trigger (a child of `and`/`or` too) may name calendars whose periods are not fire
//! times (docs/triggers.md, "Calendars"). A fire time in an excluded period is dropped and the trigger's next fire
//! time after it taken instead. Excluded stretches are skipped whole: from a fire time inside one, the trigger is
//! asked for its first fire at or after the stretch's end, so a daily trigger jumps an excluded year in one step.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::Trigger;
use crate::calendar::CompiledCalendar;
use crate::calendar::rule::excluded_until;

/// Jumps over excluded stretches one query may make before it concludes the trigger has no fire time left (a
/// trigger that fires only on Saturdays against a calendar that excludes Saturdays). Each jump is a binary search
/// and one fire-time computation, so the bound keeps a query within milliseconds.
pub const MAX_EXCLUSION_JUMPS: usize = 10_000;

/// A trigger with calendars: its fire times minus the calendars' periods.
#[derive(Debug, Clone)]
pub struct ExcludingTrigger {
    /// The trigger as it would fire without calendars.
    pub inner: Box<Trigger>,
    /// The calendars named, each with its base chain.
    pub calendars: Vec<Arc<CompiledCalendar>>,
}

/// Fire times past the end of year 9999 do not exist for any trigger; an exclusion that ends there ends the
/// trigger.
fn the_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single().expect("a valid date")
}

impl ExcludingTrigger {
    /// The inner trigger's next fire time, moved past any excluded stretch it falls in.
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let candidate = self.inner.next_fire_time(previous, now)?;
        self.first_allowed_from(candidate)
    }

    /// The first fire time at or after `t` that no calendar excludes.
    pub fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let candidate = self.inner.first_at_or_after(t)?;
        self.first_allowed_from(candidate)
    }

    /// `candidate` if allowed; else the inner trigger's first fire after each excluded stretch, until one is
    /// allowed.
    fn first_allowed_from(&self, mut candidate: DateTime<Utc>) -> Option<DateTime<Utc>> {
        for _ in 0..MAX_EXCLUSION_JUMPS {
            let Some(until) = excluded_until(&self.calendars, candidate) else { return Some(candidate) };
            if until > the_end() {
                return None;
            }
            let next = self.inner.first_at_or_after(until)?;
            // A trigger must move forward; stop rather than loop if one ever does not.
            if next <= candidate {
                return None;
            }
            candidate = next;
        }
        tracing::warn!(
            jumps = MAX_EXCLUSION_JUMPS,
            "every fire time the trigger had left fell in excluded periods, as far as was searched; it ends"
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono_tz::Tz;

    use super::*;
    use crate::calendar::{Calendar, CalendarLookup, CalendarSet};
    use crate::trigger::time::format_time;
    use crate::trigger::{TriggerSpec, preview};

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    fn calendars(json: serde_json::Value) -> CalendarSet {
        let list: Vec<Calendar> = serde_json::from_value(json).unwrap();
        CalendarSet::build(1, list, Tz::UTC)
    }

    fn fires(trigger: serde_json::Value, set: &CalendarSet, now: &str, count: usize) -> Vec<String> {
        let spec: TriggerSpec = serde_json::from_value(trigger).unwrap();
        let spec = spec.resolve(Tz::UTC, at(now)).unwrap();
        let compiled = spec.compile_with(Tz::UTC, set).unwrap();
        let tz = compiled.timezone();
        preview(&compiled, at(now), count).into_iter().map(|t| format_time(t, tz)).collect()
    }

    #[test]
    fn a_daily_job_skips_christmas_and_fires_the_next_day() {
        let set = calendars(serde_json::json!([{"id": "xmas", "exclude": {"dates": ["2026-12-25"]}}]));
        let trigger = serde_json::json!({"type": "cron", "hour": 9, "exclude_calendars": ["xmas"]});
        assert_eq!(
            fires(trigger, &set, "2026-12-24T10:00:00Z", 2),
            ["2026-12-26T09:00:00+00:00", "2026-12-27T09:00:00+00:00"]
        );
    }

    #[test]
    fn every_kind_takes_calendars_and_a_child_of_or_keeps_its_own() {
        let set = calendars(serde_json::json!([{"id": "weekend", "exclude": {"weekdays": ["sat", "sun"]}}]));
        // 2026-01-02 is a Friday.
        let interval = serde_json::json!({"type": "interval", "days": 1, "start_date": "2026-01-02T08:00:00Z",
                                          "exclude_calendars": ["weekend"]});
        assert_eq!(
            fires(interval, &set, "2026-01-02T00:00:00Z", 2),
            ["2026-01-02T08:00:00+00:00", "2026-01-05T08:00:00+00:00"]
        );
        let calendar = serde_json::json!({"type": "calendarinterval", "days": 1, "hour": 7, "start_date": "2026-01-03",
                                          "exclude_calendars": ["weekend"]});
        assert_eq!(fires(calendar, &set, "2026-01-02T00:00:00Z", 1), ["2026-01-05T07:00:00+00:00"]);
        let date =
            serde_json::json!({"type": "date", "run_date": "2026-01-03T12:00:00Z", "exclude_calendars": ["weekend"]});
        assert!(fires(date, &set, "2026-01-02T00:00:00Z", 1).is_empty(), "its only fire is excluded");
        let or = serde_json::json!({"type": "or", "triggers": [
            {"type": "cron", "hour": 9, "exclude_calendars": ["weekend"]},
            {"type": "cron", "hour": 17}]});
        assert_eq!(
            fires(or, &set, "2026-01-02T10:00:00Z", 4),
            [
                "2026-01-02T17:00:00+00:00",
                "2026-01-03T17:00:00+00:00",
                "2026-01-04T17:00:00+00:00",
                "2026-01-05T09:00:00+00:00"
            ]
        );
        let and = serde_json::json!({"type": "and", "exclude_calendars": ["weekend"], "triggers": [
            {"type": "cron", "hour": "*/6"}, {"type": "cron", "hour": "*/4"}]});
        assert_eq!(
            fires(and, &set, "2026-01-02T13:00:00Z", 2),
            ["2026-01-05T00:00:00+00:00", "2026-01-05T12:00:00+00:00"]
        );
    }

    #[test]
    fn a_daily_trigger_jumps_an_excluded_year_at_once() {
        let set = calendars(serde_json::json!([{"id": "year", "timezone": "Europe/Berlin",
            "exclude": {"ranges": [{"start": "2027-01-01T00:00:00", "end": "2028-01-01T00:00:00"}]}}]));
        let trigger = serde_json::json!({"type": "cron", "hour": 9, "timezone": "Europe/Berlin",
                                         "exclude_calendars": ["year"]});
        let started = std::time::Instant::now();
        let times = fires(trigger, &set, "2026-12-30T00:00:00Z", 10);
        assert!(started.elapsed() < std::time::Duration::from_millis(200), "took {:?}", started.elapsed());
        assert_eq!(times[..3], ["2026-12-30T09:00:00+01:00", "2026-12-31T09:00:00+01:00", "2028-01-01T09:00:00+01:00"]);
    }

    #[test]
    fn a_trigger_whose_every_fire_is_excluded_ends() {
        let set = calendars(serde_json::json!([{"id": "sat", "exclude": {"weekdays": ["sat"]}},
                                               {"id": "all", "exclude": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}}]));
        let saturdays =
            serde_json::json!({"type": "cron", "day_of_week": "sat", "hour": 9, "exclude_calendars": ["sat"]});
        let started = std::time::Instant::now();
        assert!(fires(saturdays, &set, "2026-01-01T00:00:00Z", 1).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
        let every_day = serde_json::json!({"type": "interval", "hours": 1, "exclude_calendars": ["all"]});
        assert!(fires(every_day, &set, "2026-01-01T00:00:00Z", 1).is_empty());
    }

    #[test]
    fn an_unknown_calendar_names_its_field() {
        let set = calendars(serde_json::json!([{"id": "known"}]));
        let cases = [
            (
                serde_json::json!({"type": "cron", "hour": 9, "exclude_calendars": ["known", "nope"]}),
                "exclude_calendars[1]",
            ),
            (
                serde_json::json!({"type": "or", "triggers": [{"type": "date", "run_date": "2030-01-01"},
                    {"type": "cron", "hour": 1, "exclude_calendars": ["gone"]}]}),
                "triggers[1].exclude_calendars[0]",
            ),
        ];
        for (json, field) in cases {
            let spec: TriggerSpec = serde_json::from_value(json).unwrap();
            let err = spec.compile_with(Tz::UTC, &set).unwrap_err();
            assert_eq!(err.field, field);
            assert!(err.message.contains("no calendar"), "{}", err.message);
        }
        let named: HashMap<&str, bool> = HashMap::from([("known", set.calendar("known").is_some())]);
        assert!(named["known"]);
    }

    #[test]
    fn exclude_calendars_round_trips_and_is_left_out_when_empty() {
        let spec: TriggerSpec =
            serde_json::from_value(serde_json::json!({"type": "cron", "hour": 9, "exclude_calendars": ["a"]})).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap()["exclude_calendars"], serde_json::json!(["a"]));
        assert_eq!(spec.calendar_ids(), ["a"]);
        let plain: TriggerSpec = serde_json::from_value(serde_json::json!({"type": "cron", "hour": 9})).unwrap();
        assert!(serde_json::to_value(&plain).unwrap().get("exclude_calendars").is_none());
    }
}
