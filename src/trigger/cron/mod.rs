//! `cron`: APScheduler 3.11's CronTrigger — the eight fields `year` … `second` with APScheduler's expressions and
//! default rule — or a standard `crontab` string, with apsched's DST rule instead of APScheduler's.
//!
//! `expr` parses the fields, `crontab` reads crontab strings through croner, both compile to a `schedule::Schedule`
//! (which wall times match, and a fast search for the next one), and `dst` maps matching wall times to instants.

mod crontab;
mod dst;
mod expr;
#[cfg(test)]
mod properties;
mod schedule;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};

use super::{TriggerError, time, wall};
use expr::{FIELDS, Field, Term};
use schedule::{DayTable, Schedule, YearSet};

/// A cron trigger as clients send it. Each of the eight fields is a string or an integer in APScheduler's
/// expression syntax; `crontab` replaces all eight.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    /// 4-digit year (1970–9999).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub year: Option<CronValue>,
    /// Month (1–12 or jan–dec).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub month: Option<CronValue>,
    /// Day of month (1–31, `last`, `last fri`, `2nd mon`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub day: Option<CronValue>,
    /// ISO week (1–53).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub week: Option<CronValue>,
    /// Weekday (0–6 with 0 = monday, or mon–sun).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub day_of_week: Option<CronValue>,
    /// Hour (0–23).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub hour: Option<CronValue>,
    /// Minute (0–59).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub minute: Option<CronValue>,
    /// Second (0–59).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "string_or_integer")]
    #[schema(schema_with = string_or_integer_schema)]
    pub second: Option<CronValue>,
    /// A standard 5-field crontab (`*/5 * * * *`, `0 9 * * 1-5`, `@daily`); not combinable with the fields above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crontab: Option<String>,
    /// Earliest fire time (inclusive): RFC 3339, or a date-time or date read in the trigger's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    /// Latest fire time (inclusive), written as `start_date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// IANA zone the fields are read in; the scheduler's zone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Up to this many seconds of random delay added to each fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub jitter: Option<f64>,
    /// Calendars whose periods are not fire times: ids of calendars (`PUT /v1/calendars/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_calendars: Vec<String>,
}

/// A compiled cron trigger.
#[derive(Debug, Clone)]
pub struct CronTrigger {
    /// The zone the fields are matched in.
    pub timezone: Tz,
    /// Up to this many seconds of random delay added to each fire.
    pub jitter: Option<f64>,
    /// No fire before this.
    pub start_date: Option<DateTime<Utc>>,
    /// No fire after this.
    pub end_date: Option<DateTime<Utc>>,
    schedule: Schedule,
    /// Known at compile time to match no date at all (`day=31, month=feb`), so the search is skipped.
    never_matches: bool,
}

impl CronSpec {
    fn fields(&self) -> [Option<&str>; 8] {
        [&self.year, &self.month, &self.day, &self.week, &self.day_of_week, &self.hour, &self.minute, &self.second]
            .map(|value| value.as_deref())
    }

    /// Check the spec and compile it; `default_tz` is its zone when it names none.
    pub fn compile(&self, default_tz: Tz) -> Result<CronTrigger, TriggerError> {
        let timezone = time::parse_timezone(self.timezone.as_deref(), default_tz)?;
        let start_date = self.start_date.as_deref().map(|v| time::parse_time("start_date", v, timezone)).transpose()?;
        let end_date = self.end_date.as_deref().map(|v| time::parse_time("end_date", v, timezone)).transpose()?;
        if let (Some(start), Some(end)) = (start_date, end_date)
            && end < start
        {
            return Err(TriggerError::new(
                "end_date",
                format!("{end} is before start_date {start}: the trigger would never fire", end = end.to_rfc3339()),
            ));
        }
        if let Some(jitter) = self.jitter
            && !(jitter.is_finite() && jitter >= 0.0)
        {
            return Err(TriggerError::new("jitter", format!("{jitter} is not a number of seconds ≥ 0")));
        }
        let schedule = match &self.crontab {
            Some(text) => {
                let given: Vec<&str> =
                    FIELDS.iter().zip(self.fields()).filter(|(_, v)| v.is_some()).map(|(f, _)| f.name).collect();
                if !given.is_empty() {
                    return Err(TriggerError::new(
                        "crontab",
                        format!(
                            "{text:?} cannot be combined with {}: give either crontab or the fields",
                            given.join(", ")
                        ),
                    ));
                }
                crontab::parse(text)?
            }
            None => self.fields_schedule()?,
        };
        Ok(CronTrigger {
            timezone,
            jitter: self.jitter,
            start_date,
            end_date,
            never_matches: schedule.never_matches(),
            schedule,
        })
    }

    /// APScheduler's default rule: an unset field coarser than the finest set one is `*`, a finer one its
    /// `DEFAULT_VALUES` entry (the minimum, but `*` for `week` and `day_of_week`).
    fn fields_schedule(&self) -> Result<Schedule, TriggerError> {
        let given = self.fields();
        // APScheduler reads no fields as "every second"; that is almost certainly a mistake in a request.
        let Some(finest) = given.iter().rposition(Option::is_some) else {
            return Err(TriggerError::new(
                "crontab",
                "a cron trigger needs crontab or at least one of year, month, day, week, day_of_week, hour, minute, \
                 second",
            ));
        };
        let mut terms: [Vec<Term>; 8] = Default::default();
        for (index, (field, value)) in FIELDS.iter().zip(given).enumerate() {
            let value = value.unwrap_or(if index > finest { field.default } else { "*" });
            terms[index] = expr::parse(*field, value)?;
        }
        let [year, month, day, week, day_of_week, hour, minute, second] = terms;

        let mut years = YearSet::empty();
        for term in &year {
            if let Term::Values { first, last, step } = *term {
                years.insert_every(first as i32, last as i32, step as usize);
            }
        }
        let weekdays = value_mask(&expr::DAY_OF_WEEK, &day_of_week);
        let days = DayTable::build(|day_of_month, length, first| {
            let weekday = (first.num_days_from_monday() + day_of_month - 1) % 7;
            weekdays & (1 << weekday) != 0 && day.iter().any(|term| term.matches_day(day_of_month, length, first))
        });
        let weeks = value_mask(&expr::WEEK_OF_YEAR, &week);
        let all_weeks = value_mask(&expr::WEEK_OF_YEAR, &[Term::Values { first: 1, last: 53, step: 1 }]);
        let time_of_day = (
            value_mask(&expr::HOUR, &hour) as u32,
            value_mask(&expr::MINUTE, &minute),
            value_mask(&expr::SECOND, &second),
        );
        Ok(Schedule::new(
            years,
            value_mask(&expr::MONTH, &month) as u16,
            days,
            (weeks != all_weeks).then_some(weeks),
            time_of_day,
        ))
    }
}

/// Bit `v` set for each value `v` of the field that a term takes (fields up to 63 only; not `year`).
fn value_mask(field: &Field, terms: &[Term]) -> u64 {
    (field.min..=field.max).filter(|v| terms.iter().any(|term| term.contains(*v))).fold(0, |mask, v| mask | 1 << v)
}

/// Instants a search may start from (Unix seconds): two days around `FIRST_YEAR..=LAST_YEAR` (1969-12-30 and
/// 10000-01-02, UTC), wider than any UTC offset, so every wall time in those years is covered.
const FIRST_SEARCH_START: i64 = -2 * 86_400;
const AFTER_LAST_SEARCH_START: i64 = 253_402_387_200;

/// Whole seconds: APScheduler rounds the search start up to the next second (`datetime_ceil`).
fn ceil_to_second(instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let carry = i64::from(instant.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(instant.timestamp().checked_add(carry)?, 0)
}

impl CronTrigger {
    /// APScheduler's `get_next_fire_time`: the first fire time at or after `now` (or `start_date`, if later) with no
    /// previous fire, or after `previous` with one. APScheduler 3.11 starts from `min(now, previous + 1µs)`; that
    /// is the same whenever `now >= previous` (the scheduler's case), and when `previous` lies ahead of `now` (a
    /// preview) it would repeat `previous`, so the search starts after `previous` regardless of `now`.
    pub fn next_fire_time(&self, previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.never_matches {
            return None;
        }
        let earliest = match previous {
            Some(previous) => previous.checked_add_signed(Duration::microseconds(1))?,
            None => now,
        };
        let earliest = self.start_date.map_or(earliest, |start| earliest.max(start));
        // Outside the searchable years there is nothing to find, and wall-clock arithmetic near chrono's limits
        // would overflow.
        if earliest.timestamp() >= AFTER_LAST_SEARCH_START {
            return None;
        }
        let start = ceil_to_second(earliest)?.max(DateTime::from_timestamp(FIRST_SEARCH_START, 0)?);
        let fire = dst::first_fire_at_or_after(self.timezone, &self.schedule, start)?;
        match self.end_date {
            Some(end) if fire > end => None,
            _ => Some(fire),
        }
    }

    /// Whether the wall-clock time of `instant` in the trigger's zone matches the expression (start and end dates
    /// aside). A fire time just after a spring-forward gap need not match: it stands in for a skipped wall time.
    pub fn matches(&self, instant: DateTime<Utc>) -> bool {
        self.schedule.matches(wall::wall_time(self.timezone, instant))
    }
}

/// Accepts `"5"`, `5` or `null` for a field and keeps it as the string APScheduler would read (`str(value)`).
/// A cron field as the client wrote it, a string or an integer, so a stored job reads back as it was added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronValue {
    text: String,
    integer: bool,
}

impl std::ops::Deref for CronValue {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl Serialize for CronValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.text.parse::<i64>() {
            Ok(number) if self.integer => serializer.serialize_i64(number),
            _ => serializer.serialize_str(&self.text),
        }
    }
}

fn string_or_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<CronValue>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<CronValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a cron expression as a string or an integer")
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(Some(CronValue { text: value.to_owned(), integer: false }))
        }
        fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
            Ok(Some(CronValue { text: value.to_string(), integer: true }))
        }
        fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
            Ok(Some(CronValue { text: value.to_string(), integer: true }))
        }
        fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
            // `5.0` is the integer 5, as JSON Schema counts it.
            let integer = crate::integral::integer::<_, i64>(serde::de::value::F64Deserializer::<E>::new(value))?;
            Ok(Some(CronValue { text: integer.to_string(), integer: true }))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}

fn string_or_integer_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Integer]))
        .description(Some("An APScheduler cron expression, as a string or an integer"))
}
