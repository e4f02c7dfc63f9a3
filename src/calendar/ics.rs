//! iCalendar (RFC 5545) text to excluded periods: every VEVENT, all-day or timed, is excluded over each of its
//! occurrences. `icalendar` reads the text (line unfolding, parameters, components) and `rrule` expands RRULE,
//! RDATE and EXDATE; this module only maps their values to instants:
//! - a DATE (all-day) or floating time is read in the calendar's zone; `TZID` names an IANA zone; `Z` is UTC;
//! - an event lasts to DTEND, or for DURATION (days and weeks by the wall clock, hours and less exactly), or
//!   one day when all-day without either; a timed event with neither excludes the second it starts;
//! - a recurring event's occurrences keep its length (an all-day one runs midnight to midnight even across a DST
//!   change); an event with `RECURRENCE-ID` replaces that occurrence of its series (same UID);
//! - a `STATUS:CANCELLED` event excludes nothing.
//!
//! A recurrence without end is followed up to `HORIZON_YEAR`; a calendar with more than `MAX_OCCURRENCES`
//! occurrences before then is refused, so compiling one stays quick and its periods small.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use icalendar::{CalendarComponent, CalendarDateTime, Component, DatePerhapsTime};

use super::Period;
use crate::trigger::wall;

/// Recurrences are expanded up to the start of this year: far beyond any schedule a person plans, and it bounds
/// the expansion of a rule without end.
pub const HORIZON_YEAR: i32 = 2200;
/// Occurrences of all events of one calendar, at most: a daily rule over the whole horizon fits; an hourly one
/// without end does not, and is refused rather than cut short silently.
pub const MAX_OCCURRENCES: usize = 200_000;
/// Error messages quote at most this much of a parser's complaint.
const MAX_QUOTED: usize = 300;

/// How long each occurrence of an event lasts: `days` by the wall clock, then `exact`.
#[derive(Debug, Clone, Copy)]
struct Length {
    days: u64,
    exact: TimeDelta,
}

/// A time as the text gives it: local wall time in a zone (UTC for `Z`).
#[derive(Debug, Clone, Copy)]
struct Wall {
    local: NaiveDateTime,
    tz: Tz,
    all_day: bool,
}

impl Wall {
    fn instant(&self) -> DateTime<Utc> {
        wall::resolve_earliest(self.tz, self.local)
    }
}

/// The excluded periods of the events in `text`; floating times and dates are read in `tz`. An error says which
/// event and what is wrong.
pub fn periods(text: &str, tz: Tz) -> Result<Vec<Period>, String> {
    let calendar = icalendar::Calendar::from_str(text)
        .map_err(|err| format!("is not iCalendar text: {}", quote(err.trim().to_string())))?;
    let events: Vec<(usize, &icalendar::Event)> = calendar
        .components
        .iter()
        .filter_map(|component| match component {
            CalendarComponent::Event(event) => Some(event),
            _ => None,
        })
        .enumerate()
        .collect();
    if events.is_empty() && !text.contains("BEGIN:VCALENDAR") {
        return Err("is not iCalendar text: it has no BEGIN:VCALENDAR".to_string());
    }
    // Occurrences a RECURRENCE-ID event replaces, by UID.
    let mut replaced: HashMap<String, HashSet<DateTime<Utc>>> = HashMap::new();
    for (index, event) in &events {
        if let (Some(uid), Some(property)) = (event.get_uid(), event.properties().get("RECURRENCE-ID")) {
            let at = date_value(property, tz).map_err(|err| at_event(*index, event, &err))?;
            replaced.entry(uid.to_string()).or_default().insert(at.instant());
        }
    }
    let mut periods = Vec::new();
    for (index, event) in &events {
        if event.property_value("STATUS").is_some_and(|status| status.eq_ignore_ascii_case("CANCELLED")) {
            continue;
        }
        let skip = match (event.get_uid(), event.properties().contains_key("RECURRENCE-ID")) {
            (Some(uid), false) => replaced.get(uid),
            _ => None,
        };
        event_periods(event, tz, skip, &mut periods).map_err(|err| at_event(*index, event, &err))?;
        if periods.len() > MAX_OCCURRENCES {
            return Err(format!(
                "has more than {MAX_OCCURRENCES} event occurrences before {HORIZON_YEAR}: give recurring events an \
                 end (UNTIL or COUNT) or a longer interval"
            ));
        }
    }
    Ok(periods)
}

fn quote(mut text: String) -> String {
    if text.len() > MAX_QUOTED {
        let mut cut = MAX_QUOTED;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Which event an error is about: its position (from 1) and its UID or summary when it has one.
fn at_event(index: usize, event: &icalendar::Event, message: &str) -> String {
    let name = event.get_uid().or_else(|| event.get_summary());
    match name {
        Some(name) => format!("VEVENT {} ({}): {message}", index + 1, quote(name.to_string())),
        None => format!("VEVENT {}: {message}", index + 1),
    }
}

fn event_periods(
    event: &icalendar::Event,
    tz: Tz,
    skip: Option<&HashSet<DateTime<Utc>>>,
    periods: &mut Vec<Period>,
) -> Result<(), String> {
    let start_property = event.properties().get("DTSTART").ok_or("has no DTSTART")?;
    let start = date_value(start_property, tz)?;
    let length = length(event, &start, tz)?;
    let period_at = |local: NaiveDateTime, zone: Tz| -> Result<Period, String> {
        let start = wall::resolve_earliest(zone, local);
        let day_end = match length.days {
            0 => start,
            days => {
                let local_end = local.checked_add_days(Days::new(days)).ok_or("ends out of range")?;
                wall::resolve_earliest(zone, local_end)
            }
        };
        let end = day_end.checked_add_signed(length.exact).ok_or("ends out of range")?;
        Ok(Period { start, end })
    };
    let rrule = event.property_value("RRULE");
    let rdates = event.multi_properties().get("RDATE");
    if rrule.is_none() && rdates.is_none() {
        periods.push(period_at(start.local, start.tz)?);
        return Ok(());
    }
    let zone = rrule::Tz::Tz(start.tz);
    let dt_start = start.instant().with_timezone(&zone);
    let mut set = rrule::RRuleSet::new(dt_start);
    match rrule {
        Some(rule) => {
            let rule = &until_in_utc(rule, start.tz);
            let rule = rrule::RRule::<rrule::Unvalidated>::from_str(rule)
                .map_err(|err| format!("RRULE {rule:?}: {err}"))?
                .validate(dt_start)
                .map_err(|err| format!("RRULE {rule:?}: {err}"))?;
            set = set.rrule(rule);
        }
        // RDATEs alone: DTSTART is the first occurrence (RFC 5545 3.8.5.2).
        None => set = set.rdate(dt_start),
    }
    for property in rdates.into_iter().flatten() {
        for value in date_values(property, tz)? {
            set = set.rdate(value.instant().with_timezone(&zone));
        }
    }
    for property in event.multi_properties().get("EXDATE").into_iter().flatten() {
        for value in date_values(property, tz)? {
            set = set.exdate(value.instant().with_timezone(&zone));
        }
    }
    let horizon = Utc.with_ymd_and_hms(HORIZON_YEAR, 1, 1, 0, 0, 0).single().expect("a valid date");
    for occurrence in &set {
        if occurrence.with_timezone(&Utc) >= horizon || periods.len() > MAX_OCCURRENCES {
            break;
        }
        if skip.is_some_and(|skip| skip.contains(&occurrence.with_timezone(&Utc))) {
            continue;
        }
        periods.push(period_at(occurrence.naive_local(), start.tz)?);
    }
    Ok(())
}

/// The rule with a date or floating `UNTIL` written as the UTC instant it means in the event's zone. RFC 5545 has
/// an all-day event's UNTIL be a date and a floating event's a floating time, as feeds write them; `rrule` takes
/// only UTC next to a zoned start. A date-only UNTIL includes its whole day (it is inclusive).
fn until_in_utc(rule: &str, tz: Tz) -> String {
    let parts: Vec<String> = rule
        .split(';')
        .map(|part| {
            let Some((key, value)) = part.split_once('=') else { return part.to_string() };
            if !key.trim().eq_ignore_ascii_case("UNTIL") || value.trim().ends_with(['Z', 'z']) {
                return part.to_string();
            }
            let value = value.trim();
            let local = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").ok().or_else(|| {
                NaiveDate::parse_from_str(value, "%Y%m%d").ok().and_then(|date| date.and_hms_opt(23, 59, 59))
            });
            match local {
                Some(local) => format!("{key}={}", wall::resolve_earliest(tz, local).format("%Y%m%dT%H%M%SZ")),
                // Left as written: rrule names what is wrong with it.
                None => part.to_string(),
            }
        })
        .collect();
    parts.join(";")
}

/// How long the event lasts, from DTEND or DURATION (RFC 5545 3.6.1).
fn length(event: &icalendar::Event, start: &Wall, tz: Tz) -> Result<Length, String> {
    if let Some(property) = event.properties().get("DTEND") {
        let end = date_value(property, tz)?;
        return if start.all_day && end.all_day {
            let days = (end.local.date() - start.local.date()).num_days();
            let days = u64::try_from(days).map_err(|_| "DTEND is before DTSTART".to_string())?;
            Ok(Length { days, exact: TimeDelta::zero() })
        } else {
            let exact = end.instant() - start.instant();
            if exact < TimeDelta::zero() {
                return Err("DTEND is before DTSTART".to_string());
            }
            Ok(Length { days: 0, exact })
        };
    }
    if let Some(text) = event.property_value("DURATION") {
        let bad = || format!("DURATION {text:?} is not a duration such as P1D or PT2H30M");
        let duration = iso8601::duration(text.trim()).map_err(|_| bad())?;
        return match duration {
            iso8601::Duration::Weeks(weeks) => Ok(Length { days: u64::from(weeks) * 7, exact: TimeDelta::zero() }),
            iso8601::Duration::YMDHMS { year: 0, month: 0, day, hour, minute, second, millisecond } => {
                let exact = TimeDelta::hours(hour.into())
                    + TimeDelta::minutes(minute.into())
                    + TimeDelta::seconds(second.into())
                    + TimeDelta::milliseconds(millisecond.into());
                Ok(Length { days: day.into(), exact })
            }
            _ => Err(format!("DURATION {text:?} uses years or months; RFC 5545 allows weeks, days, hours and less")),
        };
    }
    Ok(if start.all_day {
        Length { days: 1, exact: TimeDelta::zero() }
    } else {
        Length { days: 0, exact: TimeDelta::seconds(1) }
    })
}

/// A DATE or DATE-TIME property's single value.
fn date_value(property: &icalendar::Property, tz: Tz) -> Result<Wall, String> {
    let value = DatePerhapsTime::from_property(property)
        .ok_or_else(|| format!("{} {:?} is not a date or date-time", property.key(), property.value()))?;
    wall_of(value, tz)
}

/// A DATE or DATE-TIME list property's values (EXDATE and RDATE may list several, comma-separated).
fn date_values(property: &icalendar::Property, tz: Tz) -> Result<Vec<Wall>, String> {
    property
        .value()
        .split(',')
        .filter(|value| !value.trim().is_empty())
        .map(|value| {
            let mut single = icalendar::Property::new(property.key(), value.trim());
            for parameter in property.params().values() {
                single.add_parameter(parameter.key(), parameter.value());
            }
            date_value(&single, tz)
        })
        .collect()
}

fn wall_of(value: DatePerhapsTime, tz: Tz) -> Result<Wall, String> {
    let midnight = |date: NaiveDate| date.and_hms_opt(0, 0, 0).expect("midnight exists");
    Ok(match value {
        DatePerhapsTime::Date(date) => Wall { local: midnight(date), tz, all_day: true },
        DatePerhapsTime::DateTime(CalendarDateTime::Floating(local)) => Wall { local, tz, all_day: false },
        DatePerhapsTime::DateTime(CalendarDateTime::Utc(utc)) => {
            Wall { local: utc.naive_utc(), tz: Tz::UTC, all_day: false }
        }
        DatePerhapsTime::DateTime(CalendarDateTime::WithTimezone { date_time, tzid }) => {
            let name = tzid.trim_matches('"');
            let zone = name.parse::<Tz>().map_err(|_| {
                format!("TZID {name:?} is not an IANA timezone name (such as Europe/Berlin); write the time in UTC or use an IANA name")
            })?;
            Wall { local: date_time, tz: zone, all_day: false }
        }
    })
}
