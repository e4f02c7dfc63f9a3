//! `calendarinterval`: every so many years, months, weeks and days, at a fixed wall-clock time, as APScheduler
//! 3.11's CalendarIntervalTrigger. Owns the date sequence (years and months are added keeping the day of month,
//! skipping dates that do not exist, then weeks and days), and apsched's DST rule for a fixed time: a time in a
//! gap fires at the first instant after the gap, a repeated time at its first occurrence.
//!
//! The fire times are a fixed grid of *nominal dates* starting at `start_date`; every query searches that grid,
//! so a previous fire time that is not on it (one from another trigger of an `or`) still yields the grid's next.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TriggerError;
use super::interval::{serialize_number, validate_jitter};
use super::time::{parse_time, parse_timezone};
use super::wall;

/// Upper bound for years, months, weeks and days: far beyond any real schedule, small enough that date
/// arithmetic cannot overflow an i64.
pub const MAX_CALENDAR_STEP: i64 = 1_000_000;

/// Adding n months to a valid date returns to the same month and leap-year phase within the 400-year Gregorian
/// cycle (4 800 months), so a valid date is always found within this many additions.
const MAX_INVALID_DATE_STEPS: usize = 4_800;

/// The grid ends with this year: APScheduler (Python's `date`) cannot go further, and it bounds every walk.
pub const LAST_YEAR: i32 = 9999;

/// On a grid without closed form every this many dates one is remembered, so a search restarts near its target
/// (an `and` asks thousands of times, ever further out).
const CHECKPOINT_SPACING: usize = 64;

/// A fire time's local date can differ from its nominal date only around a DST gap (at most a day); searching
/// from a few days earlier never misses a fire.
const SEARCH_MARGIN_DAYS: u64 = 3;

/// Fires at `hour`:`minute`:`second` every so many `years`, `months`, `weeks` and `days`, counted in
/// calendar units from `start_date` (APScheduler's CalendarIntervalTrigger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarIntervalSpec {
    /// Years between fires.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub years: Option<i64>,
    /// Months between fires.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub months: Option<i64>,
    /// Weeks between fires.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub weeks: Option<i64>,
    /// Days between fires.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub days: Option<i64>,
    /// Hour of the fire time (0–23, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 0, maximum = 23)]
    pub hour: Option<i64>,
    /// Minute of the fire time (0–59, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 0, maximum = 59)]
    pub minute: Option<i64>,
    /// Second of the fire time (0–59, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::integral::optional")]
    #[schema(minimum = 0, maximum = 59)]
    pub second: Option<i64>,
    /// The first date (`2026-01-31`); resolved to today in the trigger's zone when a job is saved without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// The last date that may fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// IANA zone the dates and the time of day are in; the scheduler's zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Up to this many seconds of random delay added to each fire.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub jitter: Option<f64>,
    /// Calendars whose periods are not fire times: ids of calendars (`PUT /v1/calendars/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_calendars: Vec<String>,
}

/// A compiled calendar interval trigger.
#[derive(Debug, Clone)]
pub struct CalendarIntervalTrigger {
    /// Years and months together, as months.
    pub months: i64,
    /// Weeks and days together, as days.
    pub days: u64,
    /// The time of day of every fire.
    pub time: NaiveTime,
    /// The first date of the grid.
    pub start_date: NaiveDate,
    /// The last date that may fire.
    pub end_date: Option<NaiveDate>,
    /// The zone dates and the time of day are in.
    pub timezone: Tz,
    /// Up to this many seconds of random delay added to each fire.
    pub jitter: Option<f64>,
    /// Shared between clones: the grid is a pure function of the fields above.
    checkpoints: Arc<Mutex<Checkpoints>>,
}

/// Every `CHECKPOINT_SPACING`-th date of the grid from `start_date`, as far as walked so far.
#[derive(Debug, Default)]
struct Checkpoints {
    dates: Vec<NaiveDate>,
    grid_ended: bool,
}

impl CalendarIntervalSpec {
    /// Fix a missing `start_date` at today in the trigger's zone. Idempotent.
    pub fn resolve(mut self, default_tz: Tz, now: DateTime<Utc>) -> Result<Self, TriggerError> {
        if self.start_date.is_none() {
            let timezone = parse_timezone(self.timezone.as_deref(), default_tz)?;
            self.start_date = Some(wall::wall_time(timezone, now).date().format("%Y-%m-%d").to_string());
        }
        Ok(self)
    }

    /// Check the spec and compile it; `default_tz` is its zone when it names none.
    pub fn compile(&self, default_tz: Tz) -> Result<CalendarIntervalTrigger, TriggerError> {
        let timezone = parse_timezone(self.timezone.as_deref(), default_tz)?;
        let steps = [("years", self.years), ("months", self.months), ("weeks", self.weeks), ("days", self.days)];
        for (name, value) in steps {
            if let Some(value) = value
                && !(0..=MAX_CALENDAR_STEP).contains(&value)
            {
                return Err(TriggerError::new(name, format!("{value} is out of range 0–{MAX_CALENDAR_STEP}")));
            }
        }
        let [years, months, weeks, days] = steps.map(|(_, value)| value.unwrap_or(0));
        if years + months + weeks + days == 0 {
            let field = steps.iter().find(|(_, value)| value.is_some()).map_or("days", |(name, _)| name);
            let given: Vec<String> =
                steps.iter().filter_map(|(name, value)| value.map(|v| format!("{name} = {v}"))).collect();
            let what = if given.is_empty() { "no interval was given".to_string() } else { given.join(", ") };
            return Err(TriggerError::new(
                field,
                format!("{what}: the interval must be at least 1 day (set years, months, weeks or days above 0)"),
            ));
        }
        let time = self.time_of_day()?;
        let jitter = validate_jitter(self.jitter)?;
        let Some(start) = self.start_date.as_deref() else {
            return Err(TriggerError::new("start_date", "missing: the trigger was not resolved before compiling"));
        };
        let start_date = parse_date("start_date", start, timezone)?;
        let end_date = self.end_date.as_deref().map(|end| parse_date("end_date", end, timezone)).transpose()?;
        if let Some(end_date) = end_date
            && end_date < start_date
        {
            return Err(TriggerError::new("end_date", format!("{end_date} is before start_date {start_date}")));
        }
        Ok(CalendarIntervalTrigger {
            months: years * 12 + months,
            days: u64::try_from(weeks * 7 + days).unwrap_or(0),
            time,
            start_date,
            end_date,
            timezone,
            jitter,
            checkpoints: Arc::default(),
        })
    }

    fn time_of_day(&self) -> Result<NaiveTime, TriggerError> {
        let parts = [("hour", self.hour, 23), ("minute", self.minute, 59), ("second", self.second, 59)];
        for (name, value, max) in parts {
            if let Some(value) = value
                && !(0..=max).contains(&value)
            {
                return Err(TriggerError::new(name, format!("{value} is out of range 0–{max}")));
            }
        }
        let [hour, minute, second] = parts.map(|(_, value, _)| value.unwrap_or(0) as u32);
        Ok(NaiveTime::from_hms_opt(hour, minute, second).expect("validated above"))
    }
}

/// A date as APScheduler's `asdate` reads it (`2026-01-31`); a date-time is accepted too and taken as its date
/// in the trigger's zone.
fn parse_date(field: &str, value: &str, tz: Tz) -> Result<NaiveDate, TriggerError> {
    if let Ok(date) = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
        return Ok(date);
    }
    parse_time(field, value, tz).map(|instant| wall::wall_time(tz, instant).date())
}

impl CalendarIntervalTrigger {
    /// With no previous fire, the first fire at or after `now` (apsched's preview semantics; APScheduler would
    /// return `start_date` even when past); after one, the grid's first fire after it.
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match previous {
            None => self.first_fire(|fire| fire >= now, now),
            Some(previous) => self.first_fire(|fire| fire > previous, previous),
        }
    }

    /// The first fire time that `wanted` accepts, searching from around `bound` (`wanted` must accept everything
    /// after it and nothing well before it).
    fn first_fire(&self, wanted: impl Fn(DateTime<Utc>) -> bool, bound: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let near = wall::wall_time(self.timezone, bound).date().checked_sub_days(Days::new(SEARCH_MARGIN_DAYS))?;
        let mut date = self.last_date_at_or_before(near)?;
        loop {
            if self.end_date.is_some_and(|end| date > end) || date.year() > LAST_YEAR {
                return None;
            }
            let fire = self.fire_time(date);
            if wanted(fire) {
                return Some(fire);
            }
            date = self.step(date)?;
        }
    }

    /// apsched's rule for a fixed wall-clock time: the end of a gap, or the first of a repeated time.
    fn fire_time(&self, date: NaiveDate) -> DateTime<Utc> {
        wall::resolve_earliest(self.timezone, date.and_time(self.time))
    }

    /// APScheduler's step: add the months keeping the day, again while that date does not exist, then the days.
    fn step(&self, date: NaiveDate) -> Option<NaiveDate> {
        let mut next = date;
        if self.months > 0 {
            let mut month_index = i64::from(date.year()) * 12 + i64::from(date.month0());
            let mut found = None;
            for _ in 0..MAX_INVALID_DATE_STEPS {
                month_index += self.months;
                let year = i32::try_from(month_index.div_euclid(12)).ok()?;
                let month = u32::try_from(month_index.rem_euclid(12)).ok()? + 1;
                found = NaiveDate::from_ymd_opt(year, month, date.day());
                if found.is_some() {
                    break;
                }
            }
            next = found?;
        }
        next.checked_add_days(Days::new(self.days)).filter(|next| next.year() <= LAST_YEAR)
    }

    /// The last grid date at or before `target` (the start when the grid begins later). Jumps straight there when
    /// the grid has a closed form, walks it otherwise (months and days together make each step depend on the last).
    fn last_date_at_or_before(&self, target: NaiveDate) -> Option<NaiveDate> {
        let start = self.start_date;
        if target <= start {
            return Some(start);
        }
        if self.months == 0 {
            let behind = u64::try_from((target - start).num_days()).ok()?;
            return start.checked_add_days(Days::new(behind / self.days * self.days));
        }
        if self.days == 0 {
            let start_index = i64::from(start.year()) * 12 + i64::from(start.month0());
            let target_index = i64::from(target.year()) * 12 + i64::from(target.month0());
            let mut steps = (target_index - start_index) / self.months;
            while steps > 0 {
                let index = start_index + steps * self.months;
                let year = i32::try_from(index.div_euclid(12)).ok()?;
                let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
                if let Some(date) = NaiveDate::from_ymd_opt(year, month, start.day())
                    && date <= target
                {
                    return Some(date);
                }
                steps -= 1;
            }
            return Some(start);
        }
        let mut checkpoints = self.checkpoints.lock().unwrap_or_else(PoisonError::into_inner);
        if checkpoints.dates.is_empty() {
            checkpoints.dates.push(start);
        }
        while !checkpoints.grid_ended && checkpoints.dates.last().is_some_and(|&last| last <= target) {
            let mut date = *checkpoints.dates.last()?;
            for _ in 0..CHECKPOINT_SPACING {
                match self.step(date) {
                    Some(next) => date = next,
                    None => {
                        checkpoints.grid_ended = true;
                        break;
                    }
                }
            }
            if !checkpoints.grid_ended {
                checkpoints.dates.push(date);
            }
        }
        let at_or_before = checkpoints.dates.partition_point(|&date| date <= target);
        let mut date = checkpoints.dates[at_or_before.saturating_sub(1)];
        drop(checkpoints);
        while let Some(next) = self.step(date)
            && next <= target
        {
            date = next;
        }
        Some(date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{Trigger, TriggerSpec, preview, time::format_time};

    fn spec(json: &str) -> CalendarIntervalSpec {
        match serde_json::from_str::<TriggerSpec>(json).unwrap() {
            TriggerSpec::CalendarInterval(spec) => spec,
            other => panic!("not a calendarinterval: {other:?}"),
        }
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    fn fires(json: &str, now: &str, count: usize) -> Vec<String> {
        let trigger = spec(json).resolve(Tz::UTC, at(now)).unwrap().compile(Tz::UTC).unwrap();
        let tz = trigger.timezone;
        preview(&Trigger::CalendarInterval(trigger), at(now), count).into_iter().map(|t| format_time(t, tz)).collect()
    }

    #[test]
    fn the_day_of_month_is_kept_and_missing_dates_are_skipped() {
        let json = r#"{"type": "calendarinterval", "months": 1, "hour": 9, "start_date": "2026-01-31"}"#;
        let times = fires(json, "2026-01-01T00:00:00Z", 4);
        assert_eq!(
            times,
            [
                "2026-01-31T09:00:00+00:00",
                "2026-03-31T09:00:00+00:00",
                "2026-05-31T09:00:00+00:00",
                "2026-07-31T09:00:00+00:00"
            ]
        );
    }

    #[test]
    fn leap_day_yearly_skips_common_years() {
        let json =
            r#"{"type": "calendarinterval", "years": 1, "start_date": "2024-02-29", "timezone": "Europe/Berlin"}"#;
        let times = fires(json, "2024-01-01T00:00:00Z", 3);
        assert_eq!(times, ["2024-02-29T00:00:00+01:00", "2028-02-29T00:00:00+01:00", "2032-02-29T00:00:00+01:00"]);
        // 2100 is not a leap year: from 2096 the next 29 February is in 2104.
        let times = fires(json, "2097-01-01T00:00:00Z", 1);
        assert_eq!(times, ["2104-02-29T00:00:00+01:00"]);
    }

    #[test]
    fn months_then_days_follow_apscheduler_step_by_step() {
        // Jan 31 + 1 month does not exist; Mar 31 does, + 1 day = Apr 1; then May 1 + 1 = May 2.
        let json = r#"{"type": "calendarinterval", "months": 1, "days": 1, "start_date": "2026-01-31"}"#;
        let times = fires(json, "2026-01-01T00:00:00Z", 3);
        assert_eq!(times, ["2026-01-31T00:00:00+00:00", "2026-04-01T00:00:00+00:00", "2026-05-02T00:00:00+00:00"]);
        // Asking from later lands on the same grid.
        assert_eq!(fires(json, "2026-04-15T00:00:00Z", 1), ["2026-05-02T00:00:00+00:00"]);
    }

    #[test]
    fn the_first_fire_is_at_or_after_now() {
        let json = r#"{"type": "calendarinterval", "weeks": 2, "hour": 12, "start_date": "2026-01-01"}"#;
        assert_eq!(fires(json, "2026-01-15T12:00:00Z", 1), ["2026-01-15T12:00:00+00:00"]);
        assert_eq!(fires(json, "2026-01-15T12:00:01Z", 1), ["2026-01-29T12:00:00+00:00"]);
    }

    #[test]
    fn resolve_sets_today_in_the_zone_and_is_idempotent() {
        let now = at("2026-03-01T23:30:00Z");
        let resolved =
            spec(r#"{"type": "calendarinterval", "days": 1, "timezone": "Pacific/Chatham"}"#).resolve(Tz::UTC, now);
        let resolved = resolved.unwrap();
        assert_eq!(resolved.start_date.as_deref(), Some("2026-03-02"));
        assert_eq!(resolved.clone().resolve(Tz::UTC, now + chrono::TimeDelta::days(9)).unwrap(), resolved);
    }

    #[test]
    fn end_date_is_the_last_date_that_fires() {
        let json = r#"{"type": "calendarinterval", "days": 1, "hour": 23, "start_date": "2026-01-01",
                       "end_date": "2026-01-03"}"#;
        assert_eq!(fires(json, "2025-01-01T00:00:00Z", 10).len(), 3);
    }

    #[test]
    fn a_time_in_a_spring_gap_fires_at_the_end_of_the_gap() {
        let cases = [
            ("Europe/Berlin", "2026-03-28", 2, 30, "2026-03-29T03:00:00+02:00"),
            ("America/New_York", "2026-03-07", 2, 15, "2026-03-08T03:00:00-04:00"),
            ("Australia/Lord_Howe", "2026-10-03", 2, 10, "2026-10-04T02:30:00+11:00"),
            // Santiago springs forward at midnight: 00:30 on 6 September does not exist.
            ("America/Santiago", "2026-09-05", 0, 30, "2026-09-06T01:00:00-03:00"),
            ("Pacific/Chatham", "2026-09-26", 2, 50, "2026-09-27T03:45:00+13:45"),
        ];
        for (zone, start, hour, minute, expected) in cases {
            let json = format!(
                r#"{{"type": "calendarinterval", "days": 1, "hour": {hour}, "minute": {minute},
                     "start_date": "{start}", "timezone": "{zone}"}}"#
            );
            let times = fires(&json, "2026-01-01T00:00:00Z", 3);
            assert_eq!(times[1], expected, "{zone}");
            assert!(times[2].starts_with(&format!("{}T{hour:02}:{minute:02}", &times[2][..10])), "{zone}: {times:?}");
        }
    }

    #[test]
    fn a_repeated_time_fires_once_at_its_first_occurrence() {
        let cases = [
            ("Europe/Berlin", "2026-10-24", 2, 30, "2026-10-25T02:30:00+02:00"),
            ("America/New_York", "2026-10-31", 1, 30, "2026-11-01T01:30:00-04:00"),
            ("Australia/Lord_Howe", "2026-04-04", 1, 45, "2026-04-05T01:45:00+11:00"),
            ("America/Santiago", "2026-04-03", 23, 30, "2026-04-04T23:30:00-03:00"),
            ("Pacific/Chatham", "2026-04-04", 3, 0, "2026-04-05T03:00:00+13:45"),
        ];
        for (zone, start, hour, minute, expected) in cases {
            let json = format!(
                r#"{{"type": "calendarinterval", "days": 1, "hour": {hour}, "minute": {minute},
                     "start_date": "{start}", "timezone": "{zone}"}}"#
            );
            let times = fires(&json, "2026-01-01T00:00:00Z", 3);
            assert_eq!(times[1], expected, "{zone}");
            assert_ne!(&times[2][..10], &times[1][..10], "{zone}: fired twice on one day: {times:?}");
        }
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let now = at("2026-01-01T00:00:00Z");
        let cases = [
            (r#"{"type": "calendarinterval"}"#, "days", "no interval"),
            (r#"{"type": "calendarinterval", "months": 0}"#, "months", "months = 0"),
            (r#"{"type": "calendarinterval", "weeks": -1}"#, "weeks", "-1"),
            (r#"{"type": "calendarinterval", "years": 5000000}"#, "years", "5000000"),
            (r#"{"type": "calendarinterval", "days": 1, "hour": 24}"#, "hour", "24"),
            (r#"{"type": "calendarinterval", "days": 1, "minute": 60}"#, "minute", "60"),
            (r#"{"type": "calendarinterval", "days": 1, "second": -1}"#, "second", "-1"),
            (r#"{"type": "calendarinterval", "days": 1, "jitter": -3}"#, "jitter", "-3"),
            (r#"{"type": "calendarinterval", "days": 1, "start_date": "2026-02-30"}"#, "start_date", "2026-02-30"),
            (
                r#"{"type": "calendarinterval", "days": 1, "start_date": "2026-02-03", "end_date": "2026-02-01"}"#,
                "end_date",
                "2026-02-01",
            ),
        ];
        for (json, field, named) in cases {
            let err = spec(json).resolve(Tz::UTC, now).and_then(|s| s.compile(Tz::UTC)).unwrap_err();
            assert_eq!(err.field, field, "{json}");
            assert!(err.message.contains(named), "{json}: {}", err.message);
        }
    }

    #[test]
    fn grids_far_from_the_start_are_reached_quickly_and_without_overflow() {
        let json = r#"{"type": "calendarinterval", "months": 1, "days": 3, "start_date": "0001-01-01"}"#;
        assert_eq!(fires(json, "2026-01-01T00:00:00Z", 5).len(), 5);
        let json = r#"{"type": "calendarinterval", "years": 1000000, "start_date": "2026-01-01"}"#;
        assert_eq!(fires(json, "2026-01-01T00:00:00Z", 5), ["2026-01-01T00:00:00+00:00"]);
    }

    #[test]
    fn the_grid_ends_with_year_9999() {
        let json = r#"{"type": "calendarinterval", "years": 500, "start_date": "9000-06-01"}"#;
        assert_eq!(fires(json, "2026-01-01T00:00:00Z", 5), ["9000-06-01T00:00:00+00:00", "9500-06-01T00:00:00+00:00"]);
        let json = r#"{"type": "calendarinterval", "months": 7, "days": 1, "start_date": "9999-01-01"}"#;
        assert_eq!(fires(json, "2026-01-01T00:00:00Z", 5), ["9999-01-01T00:00:00+00:00", "9999-08-02T00:00:00+00:00"]);
    }
}
