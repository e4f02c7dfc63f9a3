//! `date`: fires once, at `run_date`. As in APScheduler, the first fire time is `run_date` even when it is past
//! (a job added with a past date is due at once; misfire_grace_time decides whether it still runs).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TriggerError;
use super::time::{parse_time, parse_timezone};

/// Fires once, at `run_date`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateSpec {
    /// RFC 3339, or a date-time or date without offset read in `timezone`.
    pub run_date: String,
    /// IANA zone `run_date` is read in when it has no offset; the scheduler's zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Calendars whose periods are not fire times: ids of calendars (`PUT /v1/calendars/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_calendars: Vec<String>,
}

/// A compiled date trigger.
#[derive(Debug, Clone)]
pub struct DateTrigger {
    /// The one fire time.
    pub run_date: DateTime<Utc>,
    /// The zone the fire time is written in.
    pub timezone: Tz,
}

impl DateSpec {
    /// Check the spec and compile it; `default_tz` is its zone when it names none.
    pub fn compile(&self, default_tz: Tz) -> Result<DateTrigger, TriggerError> {
        let timezone = parse_timezone(self.timezone.as_deref(), default_tz)?;
        let run_date = parse_time("run_date", &self.run_date, timezone)?;
        Ok(DateTrigger { run_date, timezone })
    }
}

impl DateTrigger {
    /// `run_date` until it has fired, then nothing.
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        previous.is_none().then_some(self.run_date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::{Trigger, TriggerSpec, preview, time::format_time};

    fn compile(json: &str) -> Result<DateTrigger, TriggerError> {
        match serde_json::from_str::<TriggerSpec>(json).unwrap() {
            TriggerSpec::Date(spec) => spec.compile(Tz::UTC),
            other => panic!("not a date: {other:?}"),
        }
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fires_once_even_when_past() {
        let trigger = compile(r#"{"type": "date", "run_date": "2020-05-01T10:00:00+02:00"}"#).unwrap();
        let times = preview(&Trigger::Date(trigger), at("2026-01-01T00:00:00Z"), 5);
        assert_eq!(times, [at("2020-05-01T08:00:00Z")]);
    }

    #[test]
    fn a_naive_run_date_is_read_in_the_zone() {
        let trigger =
            compile(r#"{"type": "date", "run_date": "2026-07-01 09:30:00", "timezone": "America/New_York"}"#).unwrap();
        assert_eq!(format_time(trigger.run_date, trigger.timezone), "2026-07-01T09:30:00-04:00");
        let trigger = compile(r#"{"type": "date", "run_date": "2026-07-01", "timezone": "Pacific/Chatham"}"#).unwrap();
        assert_eq!(format_time(trigger.run_date, trigger.timezone), "2026-07-01T00:00:00+12:45");
    }

    #[test]
    fn a_naive_run_date_in_a_gap_fires_at_the_end_of_the_gap() {
        let trigger =
            compile(r#"{"type": "date", "run_date": "2026-03-08 02:30:00", "timezone": "America/New_York"}"#).unwrap();
        assert_eq!(format_time(trigger.run_date, trigger.timezone), "2026-03-08T03:00:00-04:00");
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let err = compile(r#"{"type": "date", "run_date": "next tuesday"}"#).unwrap_err();
        assert_eq!(err.field, "run_date");
        assert!(err.message.contains("next tuesday"));
        let err = compile(r#"{"type": "date", "run_date": "2026-01-01", "timezone": "Berlin"}"#).unwrap_err();
        assert_eq!(err.field, "timezone");
        assert!(err.message.contains("Berlin"));
        assert!(serde_json::from_str::<TriggerSpec>(r#"{"type": "date", "run_date": "2026-01-01", "x": 1}"#).is_err());
    }
}
