//! `interval`: fires every fixed span of absolute time from `start_date`, as APScheduler 3.11's IntervalTrigger.
//! Absolute means a 24-hour interval shifts by an hour of wall time across a DST change. Owns the interval's
//! validation, the resolution of a missing `start_date` (add time + one interval) and the grid arithmetic.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use super::TriggerError;
use super::time::{format_time, parse_time, parse_timezone};

/// The longest interval accepted: 10 000 years keeps every grid computation inside chrono's range.
pub const MAX_INTERVAL_SECONDS: f64 = 10_000.0 * 366.0 * 86_400.0;

/// APScheduler builds a `timedelta`, which holds whole microseconds; the grid is computed at that resolution.
const NANOS_PER_MICRO: i128 = 1_000;

const SECONDS_PER_UNIT: [(&str, f64); 5] =
    [("weeks", 604_800.0), ("days", 86_400.0), ("hours", 3_600.0), ("minutes", 60.0), ("seconds", 1.0)];

/// Fires every `weeks` + `days` + `hours` + `minutes` + `seconds` (fractions allowed), from `start_date` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntervalSpec {
    /// Weeks of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub weeks: Option<f64>,
    /// Days of the interval (24 hours each).
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub days: Option<f64>,
    /// Hours of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub hours: Option<f64>,
    /// Minutes of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub minutes: Option<f64>,
    /// Seconds of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub seconds: Option<f64>,
    /// The first fire time; resolved to "now + interval" when a job is saved without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// Latest fire time (inclusive): RFC 3339, or a date-time or date read in the trigger's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// IANA zone dates without an offset are read in and fire times written in; the scheduler's zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Seconds of random delay added to each fire.
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "serialize_number")]
    pub jitter: Option<f64>,
    /// Calendars whose periods are not fire times: ids of calendars (`PUT /v1/calendars/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_calendars: Vec<String>,
}

/// A compiled interval trigger.
#[derive(Debug, Clone)]
pub struct IntervalTrigger {
    /// The time between fires, in whole microseconds.
    pub interval: TimeDelta,
    /// The first fire time; every later one is a whole number of intervals after it.
    pub start_date: DateTime<Utc>,
    /// No fire after this.
    pub end_date: Option<DateTime<Utc>>,
    /// The zone fire times are written in.
    pub timezone: Tz,
    /// Up to this many seconds of random delay added to each fire.
    pub jitter: Option<f64>,
}

impl IntervalSpec {
    fn units(&self) -> [(&'static str, Option<f64>); 5] {
        let values = [self.weeks, self.days, self.hours, self.minutes, self.seconds];
        std::array::from_fn(|i| (SECONDS_PER_UNIT[i].0, values[i]))
    }

    /// The interval as APScheduler's `timedelta` holds it: whole microseconds, > 0.
    fn interval(&self) -> Result<TimeDelta, TriggerError> {
        let mut total_seconds = 0.0;
        for ((name, value), (_, unit_seconds)) in self.units().into_iter().zip(SECONDS_PER_UNIT) {
            let Some(value) = value else { continue };
            if !value.is_finite() || value < 0.0 {
                return Err(TriggerError::new(name, format!("{value} is not a non-negative number")));
            }
            total_seconds += value * unit_seconds;
        }
        if total_seconds > MAX_INTERVAL_SECONDS {
            return Err(TriggerError::new(
                self.first_given_unit().unwrap_or("seconds"),
                format!("the interval ({total_seconds} s) is longer than the maximum of {MAX_INTERVAL_SECONDS} s"),
            ));
        }
        let micros = (total_seconds * 1e6).round() as i64;
        if micros <= 0 {
            let given: Vec<String> =
                self.units().into_iter().filter_map(|(name, v)| v.map(|v| format!("{name} = {v}"))).collect();
            let what = if given.is_empty() { "no interval was given".to_string() } else { given.join(", ") };
            return Err(TriggerError::new(
                self.first_given_unit().unwrap_or("seconds"),
                format!("{what}: the interval must be longer than 0 (set weeks, days, hours, minutes or seconds)"),
            ));
        }
        Ok(TimeDelta::microseconds(micros))
    }

    fn first_given_unit(&self) -> Option<&'static str> {
        self.units().into_iter().find(|(_, v)| v.is_some()).map(|(name, _)| name)
    }

    /// Fix a missing `start_date` at `now` + the interval, written in the trigger's zone. Idempotent.
    pub fn resolve(mut self, default_tz: Tz, now: DateTime<Utc>) -> Result<Self, TriggerError> {
        if self.start_date.is_none() {
            let timezone = parse_timezone(self.timezone.as_deref(), default_tz)?;
            let start = now.checked_add_signed(self.interval()?).ok_or_else(|| {
                TriggerError::new("start_date", "now + the interval is beyond the last representable time")
            })?;
            self.start_date = Some(format_time(start, timezone));
        }
        Ok(self)
    }

    /// Check the spec and compile it; `default_tz` is its zone when it names none.
    pub fn compile(&self, default_tz: Tz) -> Result<IntervalTrigger, TriggerError> {
        let timezone = parse_timezone(self.timezone.as_deref(), default_tz)?;
        let interval = self.interval()?;
        let jitter = validate_jitter(self.jitter)?;
        let Some(start) = self.start_date.as_deref() else {
            return Err(TriggerError::new("start_date", "missing: the trigger was not resolved before compiling"));
        };
        let start_date = parse_time("start_date", start, timezone)?;
        let end_date = self.end_date.as_deref().map(|end| parse_time("end_date", end, timezone)).transpose()?;
        if let Some(end_date) = end_date
            && end_date < start_date
        {
            return Err(TriggerError::new(
                "end_date",
                format!(
                    "{:?} is before start_date {:?}",
                    self.end_date.as_deref().unwrap_or_default(),
                    format_time(start_date, timezone)
                ),
            ));
        }
        Ok(IntervalTrigger { interval, start_date, end_date, timezone, jitter })
    }
}

/// f64 holds every integer up to 2^53 exactly.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Whole numbers serialize as integers, so a stored spec reads back as the client wrote it (`"hours": 2`).
pub(crate) fn serialize_number<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match *value {
        Some(number) if number.fract() == 0.0 && number.abs() < MAX_EXACT_INTEGER => {
            serializer.serialize_i64(number as i64)
        }
        Some(number) => serializer.serialize_f64(number),
        None => serializer.serialize_none(),
    }
}

/// Jitter is seconds of delay: a finite, non-negative number.
pub(crate) fn validate_jitter(jitter: Option<f64>) -> Result<Option<f64>, TriggerError> {
    match jitter {
        Some(value) if !value.is_finite() || value < 0.0 => {
            Err(TriggerError::new("jitter", format!("{value} is not a non-negative number of seconds")))
        }
        other => Ok(other),
    }
}

impl IntervalTrigger {
    /// APScheduler's arithmetic: after a previous fire, previous + interval; otherwise `start_date` when it is
    /// still ahead, else the first point of the grid `start_date + k × interval` at or after `now`.
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = match previous {
            Some(previous) => previous.checked_add_signed(self.interval)?,
            None => self.first_at_or_after(now)?,
        };
        self.end_date.is_none_or(|end| next <= end).then_some(next)
    }

    /// The first grid point at or after `t`, ignoring `end_date`.
    fn first_at_or_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start_date >= t {
            return Some(self.start_date);
        }
        let behind = total_nanoseconds(t - self.start_date);
        let step = i128::from(self.interval.num_microseconds()?) * NANOS_PER_MICRO;
        let steps = (behind + step - 1) / step;
        let offset = steps.checked_mul(step)?;
        let offset = TimeDelta::new(
            i64::try_from(offset.div_euclid(1_000_000_000)).ok()?,
            u32::try_from(offset.rem_euclid(1_000_000_000)).ok()?,
        )?;
        self.start_date.checked_add_signed(offset)
    }
}

/// A span in nanoseconds, wide enough for any span between two chrono instants.
fn total_nanoseconds(span: TimeDelta) -> i128 {
    i128::from(span.num_seconds()) * 1_000_000_000 + i128::from(span.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{TriggerSpec, preview};

    fn spec(json: &str) -> IntervalSpec {
        match serde_json::from_str::<TriggerSpec>(json).unwrap() {
            TriggerSpec::Interval(spec) => spec,
            other => panic!("not an interval: {other:?}"),
        }
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    fn fires(json: &str, now: &str, count: usize) -> Vec<String> {
        let spec = spec(json).resolve(Tz::UTC, at(now)).unwrap();
        let trigger = spec.compile(Tz::UTC).unwrap();
        preview(&crate::trigger::Trigger::Interval(trigger.clone()), at(now), count)
            .into_iter()
            .map(|t| format_time(t, trigger.timezone))
            .collect()
    }

    #[test]
    fn without_start_date_the_first_fire_is_now_plus_the_interval() {
        let times = fires(r#"{"type": "interval", "hours": 2}"#, "2026-01-01T10:00:00Z", 3);
        assert_eq!(times, ["2026-01-01T12:00:00+00:00", "2026-01-01T14:00:00+00:00", "2026-01-01T16:00:00+00:00"]);
    }

    #[test]
    fn resolve_writes_the_start_in_the_zone_and_is_idempotent() {
        let now = at("2026-01-01T10:00:00Z");
        let resolved =
            spec(r#"{"type": "interval", "minutes": 90, "timezone": "Europe/Berlin"}"#).resolve(Tz::UTC, now).unwrap();
        assert_eq!(resolved.start_date.as_deref(), Some("2026-01-01T12:30:00+01:00"));
        let again = resolved.clone().resolve(Tz::UTC, now + TimeDelta::hours(5)).unwrap();
        assert_eq!(again, resolved);
    }

    #[test]
    fn a_past_start_continues_on_its_grid() {
        let json = r#"{"type": "interval", "minutes": 7, "start_date": "2026-01-01T00:00:00Z"}"#;
        let times = fires(json, "2026-01-01T01:00:00Z", 2);
        // 60 / 7 = 8.57: the 9th step, 63 minutes after the start.
        assert_eq!(times, ["2026-01-01T01:03:00+00:00", "2026-01-01T01:10:00+00:00"]);
        // `now` exactly on the grid fires at `now`.
        let times = fires(json, "2026-01-01T01:10:00Z", 1);
        assert_eq!(times, ["2026-01-01T01:10:00+00:00"]);
    }

    #[test]
    fn fires_stop_at_end_date_inclusive() {
        let json = r#"{"type": "interval", "hours": 1, "start_date": "2026-01-01T00:00:00Z",
                       "end_date": "2026-01-01T02:00:00Z"}"#;
        assert_eq!(fires(json, "2025-12-31T00:00:00Z", 10).len(), 3);
        assert!(fires(json, "2026-01-01T02:00:01Z", 10).is_empty());
    }

    #[test]
    fn a_day_long_interval_shifts_wall_time_across_dst() {
        let json = r#"{"type": "interval", "days": 1, "start_date": "2026-03-28 09:00:00",
                       "timezone": "Europe/Berlin"}"#;
        let times = fires(json, "2026-03-28T00:00:00Z", 3);
        assert_eq!(times, ["2026-03-28T09:00:00+01:00", "2026-03-29T10:00:00+02:00", "2026-03-30T10:00:00+02:00"]);
        let json = r#"{"type": "interval", "hours": 24, "start_date": "2026-04-04 12:00:00",
                       "timezone": "Pacific/Chatham"}"#;
        // Chatham leaves daylight time on 2026-04-05 (+13:45 -> +12:45).
        let times = fires(json, "2026-04-01T00:00:00Z", 2);
        assert_eq!(times, ["2026-04-04T12:00:00+13:45", "2026-04-05T11:00:00+12:45"]);
    }

    #[test]
    fn lord_howe_half_hour_shift() {
        let json = r#"{"type": "interval", "days": 1, "start_date": "2026-10-03 12:00:00",
                       "timezone": "Australia/Lord_Howe"}"#;
        let times = fires(json, "2026-10-01T00:00:00Z", 2);
        assert_eq!(times, ["2026-10-03T12:00:00+10:30", "2026-10-04T12:30:00+11:00"]);
    }

    #[test]
    fn fractional_seconds_keep_microsecond_precision() {
        let json = r#"{"type": "interval", "seconds": 0.25, "start_date": "2026-01-01T00:00:00Z"}"#;
        let times = fires(json, "2026-01-01T00:00:00.1Z", 2);
        assert_eq!(times, ["2026-01-01T00:00:00.250+00:00", "2026-01-01T00:00:00.500+00:00"]);
    }

    #[test]
    fn invalid_intervals_name_the_field_and_value() {
        let cases = [
            (r#"{"type": "interval"}"#, "seconds", "no interval"),
            (r#"{"type": "interval", "hours": 0, "minutes": 0}"#, "hours", "hours = 0"),
            (r#"{"type": "interval", "minutes": -5}"#, "minutes", "-5"),
            (r#"{"type": "interval", "weeks": 1e300}"#, "weeks", "maximum"),
            (r#"{"type": "interval", "seconds": 1, "jitter": -1}"#, "jitter", "-1"),
            (r#"{"type": "interval", "seconds": 1, "timezone": "Nowhere/City"}"#, "timezone", "Nowhere/City"),
            (r#"{"type": "interval", "seconds": 1, "start_date": "soon"}"#, "start_date", "soon"),
        ];
        for (json, field, named) in cases {
            let err = spec(json).resolve(Tz::UTC, at("2026-01-01T00:00:00Z")).and_then(|s| s.compile(Tz::UTC));
            let err = err.unwrap_err();
            assert_eq!(err.field, field, "{json}");
            assert!(err.message.contains(named), "{json}: {}", err.message);
        }
    }

    #[test]
    fn end_before_start_is_an_error_on_end_date() {
        let json = r#"{"type": "interval", "hours": 1, "start_date": "2026-01-02", "end_date": "2026-01-01"}"#;
        let err = spec(json).compile(Tz::UTC).unwrap_err();
        assert_eq!(err.field, "end_date");
        assert!(err.message.contains("2026-01-01"));
    }

    #[test]
    fn unknown_fields_are_rejected_and_none_is_not_serialized() {
        assert!(serde_json::from_str::<TriggerSpec>(r#"{"type": "interval", "hourz": 1}"#).is_err());
        let whole = spec(r#"{"type": "interval", "hours": 1}"#);
        assert_eq!(serde_json::to_string(&whole).unwrap(), r#"{"hours":1}"#);
        let fractional = spec(r#"{"type": "interval", "seconds": 1.5, "jitter": 2}"#);
        assert_eq!(serde_json::to_string(&fractional).unwrap(), r#"{"seconds":1.5,"jitter":2}"#);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let json = r#"{"type": "interval", "weeks": 500000, "start_date": "2026-01-01T00:00:00Z"}"#;
        let times = fires(json, "2026-01-01T00:00:00Z", 1000);
        assert!(!times.is_empty());
    }
}
