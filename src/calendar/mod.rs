//! Calendars: named sets of excluded periods that any trigger can name in `exclude_calendars` (docs/triggers.md,
//! "Calendars"). A calendar lists dates, ranges and weekdays read in its own zone, iCalendar text whose events are
//! all excluded, and a `base` calendar whose exclusions add to its own.
//!
//! This module owns the model as the API takes it (`Calendar`), its checks (each error names its field), and the
//! compiled form the triggers ask (`rule::CompiledCalendar`): every excluded instant as sorted, merged periods plus
//! weekday masks, so "is this fire time excluded, and until when" is a binary search. `CalendarSet` is every stored
//! calendar compiled with its base chain, as the scheduler holds it.

pub mod ics;
pub mod rule;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use rule::{CompiledCalendar, Period};

use crate::trigger::time::{parse_time, parse_timezone};
use crate::trigger::wall;

/// More dates than this in one calendar is a mistake (a holiday list is dozens; use a range for a long stretch).
pub const MAX_DATES: usize = 10_000;
/// More ranges than this in one calendar is a mistake; iCalendar text suits long lists better.
pub const MAX_RANGES: usize = 10_000;
/// A chain of `base` calendars deeper than this is a mistake, and bounds the walk that finds a cycle.
pub const MAX_BASE_DEPTH: usize = 32;

/// Named exclusions: a fire time in any of its periods (or its base's) is not a fire time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// 1–200 characters of `[A-Za-z0-9._:-]`. In a `PUT` body it may be left out or empty (the path names it);
    /// one that differs from the path's is refused.
    #[serde(default)]
    #[schema(example = "us-holidays")]
    pub id: String,
    /// IANA zone the dates, ranges and weekdays are read in; the scheduler's zone when absent (and then filled in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "America/New_York")]
    pub timezone: Option<String>,
    /// Dates, ranges and weekdays to exclude.
    #[serde(default)]
    pub exclude: Exclude,
    /// iCalendar (RFC 5545) text: every VEVENT in it is excluded, all-day or timed, with its RRULE, RDATE and
    /// EXDATE. Recurrences are followed up to the year 2200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261225\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )]
    pub ics: Option<String>,
    /// Another calendar whose exclusions add to this one's (it may have a base of its own; no cycles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// What a calendar excludes besides its iCalendar events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    /// Whole days (`2026-12-25`), from midnight to midnight in the calendar's zone.
    #[serde(default)]
    #[schema(example = json!(["2026-12-25"]))]
    pub dates: Vec<String>,
    /// Periods `[start, end)`: naive times read in the calendar's zone, or RFC 3339.
    #[serde(default)]
    pub ranges: Vec<Range>,
    /// Days of the week, every week: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    #[serde(default)]
    #[schema(example = json!(["sat", "sun"]))]
    pub weekdays: Vec<String>,
}

/// A period `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The first excluded instant: `2026-12-24T12:00:00` (in the calendar's zone) or RFC 3339.
    #[schema(example = "2026-12-24T12:00:00")]
    pub start: String,
    /// The first instant after the period, later than `start`.
    #[schema(example = "2026-12-27T00:00:00")]
    pub end: String,
}

/// What is wrong with a calendar: `field` is the path inside it (`exclude.dates[2]`, `ics`, `base`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CalendarError {
    /// Where in the calendar.
    pub field: String,
    /// The value and the rule it breaks.
    pub message: String,
}

impl CalendarError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Weekday names as calendars write them, Monday first (chrono's `num_days_from_monday`).
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl Calendar {
    /// The zone its dates are read in.
    pub fn zone(&self, default_tz: Tz) -> Result<Tz, CalendarError> {
        parse_timezone(self.timezone.as_deref(), default_tz).map_err(|err| CalendarError::new("timezone", err.message))
    }

    /// Compile this calendar's own exclusions (not its base's): every check but the base's, each error naming its
    /// field.
    pub fn compile_own(&self, default_tz: Tz) -> Result<CompiledCalendar, CalendarError> {
        let tz = self.zone(default_tz)?;
        let exclude = &self.exclude;
        if exclude.dates.len() > MAX_DATES {
            return Err(CalendarError::new(
                "exclude.dates",
                format!("has {} dates; at most {MAX_DATES} (use a range for a long stretch)", exclude.dates.len()),
            ));
        }
        if exclude.ranges.len() > MAX_RANGES {
            return Err(CalendarError::new(
                "exclude.ranges",
                format!("has {} ranges; at most {MAX_RANGES}", exclude.ranges.len()),
            ));
        }
        let mut periods = Vec::with_capacity(exclude.dates.len() + exclude.ranges.len());
        for (index, date) in exclude.dates.iter().enumerate() {
            let field = format!("exclude.dates[{index}]");
            let day = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
                .map_err(|_| CalendarError::new(&field, format!("{date:?} is not a date: write 2026-12-25")))?;
            periods.push(whole_days(tz, day, 1).ok_or_else(|| CalendarError::new(&field, "is out of range"))?);
        }
        for (index, range) in exclude.ranges.iter().enumerate() {
            let field = |end: &str| format!("exclude.ranges[{index}].{end}");
            let start = parse_time(&field("start"), &range.start, tz)
                .map_err(|err| CalendarError::new(err.field, err.message))?;
            let end =
                parse_time(&field("end"), &range.end, tz).map_err(|err| CalendarError::new(err.field, err.message))?;
            if end <= start {
                return Err(CalendarError::new(
                    field("end"),
                    format!("{:?} is not later than start {:?}", range.end, range.start),
                ));
            }
            periods.push(Period { start, end });
        }
        let mut mask = 0u8;
        for (index, name) in exclude.weekdays.iter().enumerate() {
            let position = WEEKDAYS.iter().position(|day| day.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
                CalendarError::new(
                    format!("exclude.weekdays[{index}]"),
                    format!("{name:?} is not a weekday: use mon, tue, wed, thu, fri, sat or sun"),
                )
            })?;
            mask |= 1 << position;
        }
        if let Some(text) = &self.ics {
            periods.extend(ics::periods(text, tz).map_err(|message| CalendarError::new("ics", message))?);
        }
        Ok(CompiledCalendar::new(periods, tz, mask))
    }

    /// The calendar as stored: its zone filled in (the scheduler's when it named none), so a later change of the
    /// scheduler's zone does not move its dates.
    pub fn resolved(mut self, default_tz: Tz) -> Result<Calendar, CalendarError> {
        self.timezone = Some(self.zone(default_tz)?.name().to_string());
        Ok(self)
    }
}

/// `days` whole days from midnight of `day` in `tz` (a midnight that a DST gap skips starts at the gap's end).
pub fn whole_days(tz: Tz, day: NaiveDate, days: u64) -> Option<Period> {
    let end = day.checked_add_days(Days::new(days))?;
    let midnight = |date: NaiveDate| wall::resolve_earliest(tz, date.and_hms_opt(0, 0, 0).expect("midnight exists"));
    Some(Period { start: midnight(day), end: midnight(end) })
}

/// Check `calendar`'s `base` against the other stored calendars: it must exist, and following bases from it must
/// never come back to `calendar` (nor be longer than `MAX_BASE_DEPTH`).
pub fn check_base(calendar: &Calendar, stored: &HashMap<String, Calendar>) -> Result<(), CalendarError> {
    let Some(first) = &calendar.base else { return Ok(()) };
    let mut chain = vec![calendar.id.clone()];
    let mut next = Some(first.clone());
    while let Some(id) = next {
        if chain.contains(&id) {
            chain.push(id);
            return Err(CalendarError::new("base", format!("makes a cycle: {}", chain.join(" → "))));
        }
        if chain.len() > MAX_BASE_DEPTH {
            return Err(CalendarError::new("base", format!("chains more than {MAX_BASE_DEPTH} calendars")));
        }
        let Some(base) = stored.get(&id) else {
            let message = if chain.len() == 1 {
                format!("no calendar has id {id:?}")
            } else {
                format!("{id:?}, the base of {:?}, does not exist", chain.last().expect("chain starts with one"))
            };
            return Err(CalendarError::new("base", message));
        };
        chain.push(id);
        next = base.base.clone();
    }
    Ok(())
}

/// Every stored calendar compiled with its base chain, as the planner and the API's checks use them. `version` is
/// the store's calendar version it was read at.
#[derive(Debug, Default)]
pub struct CalendarSet {
    /// The store's calendar version this set was built from.
    pub version: u64,
    calendars: HashMap<String, Arc<CompiledCalendar>>,
}

/// Finds a compiled calendar by id; what a trigger's `exclude_calendars` is compiled against.
pub trait CalendarLookup {
    /// The calendar with this id, compiled with its base chain.
    fn calendar(&self, id: &str) -> Option<Arc<CompiledCalendar>>;
}

/// No calendars at all: a trigger naming one does not compile.
pub struct NoCalendars;

impl CalendarLookup for NoCalendars {
    fn calendar(&self, _id: &str) -> Option<Arc<CompiledCalendar>> {
        None
    }
}

impl CalendarLookup for CalendarSet {
    fn calendar(&self, id: &str) -> Option<Arc<CompiledCalendar>> {
        self.calendars.get(id).cloned()
    }
}

impl CalendarSet {
    /// Compile every calendar with its bases. Stored calendars were checked when saved; one that no longer compiles
    /// (the zone database changed) or whose base went missing is logged and kept with what does compile, so one
    /// bad calendar does not stop the others.
    pub fn build(version: u64, calendars: Vec<Calendar>, default_tz: Tz) -> CalendarSet {
        let by_id: BTreeMap<String, Calendar> =
            calendars.into_iter().map(|calendar| (calendar.id.clone(), calendar)).collect();
        let mut compiled: HashMap<String, Arc<CompiledCalendar>> = HashMap::with_capacity(by_id.len());
        for id in by_id.keys() {
            compile_chain(id, &by_id, default_tz, &mut compiled, &mut HashSet::new());
        }
        CalendarSet { version, calendars: compiled }
    }

    /// How many calendars it holds.
    pub fn len(&self) -> usize {
        self.calendars.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.calendars.is_empty()
    }
}

fn compile_chain(
    id: &str,
    by_id: &BTreeMap<String, Calendar>,
    default_tz: Tz,
    compiled: &mut HashMap<String, Arc<CompiledCalendar>>,
    visiting: &mut HashSet<String>,
) -> Option<Arc<CompiledCalendar>> {
    if let Some(done) = compiled.get(id) {
        return Some(done.clone());
    }
    let calendar = by_id.get(id)?;
    if !visiting.insert(id.to_string()) {
        tracing::error!(calendar = %id, "stored calendars form a cycle through base; the base is ignored");
        return None;
    }
    let own = calendar.compile_own(default_tz).unwrap_or_else(|err| {
        tracing::error!(calendar = %id, error = %err, "stored calendar does not compile; it excludes nothing");
        CompiledCalendar::default()
    });
    let base = calendar.base.as_deref().and_then(|base| {
        let found = compile_chain(base, by_id, default_tz, compiled, visiting);
        if found.is_none() && !by_id.contains_key(base) {
            tracing::error!(calendar = %id, %base, "stored calendar's base does not exist; it is ignored");
        }
        found
    });
    let whole = Arc::new(match base {
        Some(base) => own.with_base(&base),
        None => own,
    });
    visiting.remove(id);
    compiled.insert(id.to_string(), whole.clone());
    Some(whole)
}

/// Is `instant` excluded by `calendar` (and its base chain)?
pub fn is_excluded(calendar: &CompiledCalendar, instant: DateTime<Utc>) -> bool {
    calendar.excluded_until(instant).is_some()
}

#[cfg(test)]
mod tests;
