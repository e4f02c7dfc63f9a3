//! The exclusion rule: is an instant excluded, and if so until when. A compiled calendar is its excluded periods
//! (dates, ranges and iCalendar events, all as UTC instants) sorted and merged, plus weekday masks each in its own
//! calendar's zone (a base may have another zone). `excluded_until` answers with the end of the whole excluded
//! stretch around an instant — adjacent or overlapping periods and excluded weekdays joined — so a trigger skips
//! an excluded year in one jump instead of testing every fire time in it.

use std::borrow::Borrow;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::trigger::wall;

/// Joining periods and weekdays into one stretch stops after this many steps; the caller then asks again from
/// where it stopped, so a pathological calendar costs bounded work per question, never a wrong answer.
const MAX_JOIN_STEPS: usize = 1_000;

/// Excluded from `start` (inclusive) to `end` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    /// The first excluded instant.
    pub start: DateTime<Utc>,
    /// The first instant after the period.
    pub end: DateTime<Utc>,
}

/// A calendar ready to answer: its periods and weekdays with its base chain's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompiledCalendar {
    /// Sorted by start, disjoint and not touching (touching ones are merged).
    periods: Vec<Period>,
    /// Excluded weekdays (bit 0 Monday … bit 6 Sunday) in a zone: this calendar's and each base's.
    weekdays: Vec<(Tz, u8)>,
}

/// Sort and merge overlapping or touching periods; empty ones go.
fn merge(mut periods: Vec<Period>) -> Vec<Period> {
    periods.retain(|period| period.start < period.end);
    periods.sort_unstable();
    let mut merged: Vec<Period> = Vec::with_capacity(periods.len());
    for period in periods {
        match merged.last_mut() {
            Some(last) if period.start <= last.end => last.end = last.end.max(period.end),
            _ => merged.push(period),
        }
    }
    merged
}

impl CompiledCalendar {
    /// A calendar excluding `periods` and, in `tz`, the weekdays of `weekday_mask` (bit 0 Monday).
    pub fn new(periods: Vec<Period>, tz: Tz, weekday_mask: u8) -> CompiledCalendar {
        let weekdays = if weekday_mask == 0 { Vec::new() } else { vec![(tz, weekday_mask & 0x7f)] };
        CompiledCalendar { periods: merge(periods), weekdays }
    }

    /// This calendar's exclusions and `base`'s together.
    pub fn with_base(mut self, base: &CompiledCalendar) -> CompiledCalendar {
        self.periods.extend_from_slice(&base.periods);
        self.periods = merge(self.periods);
        self.weekdays.extend_from_slice(&base.weekdays);
        self
    }

    /// How many merged periods it holds.
    pub fn period_count(&self) -> usize {
        self.periods.len()
    }

    /// If `instant` is excluded, the first instant after the excluded stretch around it; `None` when it is not
    /// excluded. A stretch that never ends (every weekday excluded) ends at `DateTime::<Utc>::MAX_UTC`.
    pub fn excluded_until(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        excluded_until(std::slice::from_ref(self), instant)
    }

    /// The end of the latest-ending single period or weekday run that contains `instant`.
    fn step(&self, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut end = None;
        let after = self.periods.partition_point(|period| period.start <= instant);
        if after > 0 && self.periods[after - 1].end > instant {
            end = Some(self.periods[after - 1].end);
        }
        for &(tz, mask) in &self.weekdays {
            if let Some(weekday_end) = weekday_run_end(tz, mask, instant) {
                end = end.max(Some(weekday_end));
            }
        }
        end
    }
}

/// Is a day's weekday in `mask`?
fn masked(mask: u8, day: NaiveDate) -> bool {
    mask & (1 << day.weekday().num_days_from_monday()) != 0
}

/// If `instant` falls on an excluded weekday in `tz`, local midnight after the run of excluded days it starts.
fn weekday_run_end(tz: Tz, mask: u8, instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let day = wall::wall_time(tz, instant).date();
    if !masked(mask, day) {
        return None;
    }
    if mask == 0x7f {
        return Some(DateTime::<Utc>::MAX_UTC);
    }
    let mut next = day;
    // At most six more excluded days follow (the mask has a free day).
    for _ in 0..7 {
        next = next.checked_add_days(Days::new(1))?;
        if !masked(mask, next) {
            break;
        }
    }
    Some(wall::resolve_earliest(tz, next.and_hms_opt(0, 0, 0).expect("midnight exists")))
}

/// The end of the excluded stretch around `instant` across `calendars`: periods and weekday runs that overlap or
/// touch are joined. `None` when `instant` is not excluded by any.
pub fn excluded_until<C: Borrow<CompiledCalendar>>(calendars: &[C], instant: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut until = None;
    let mut at = instant;
    for _ in 0..MAX_JOIN_STEPS {
        let Some(end) = calendars.iter().filter_map(|calendar| calendar.borrow().step(at)).max() else { break };
        until = Some(end);
        if end == DateTime::<Utc>::MAX_UTC {
            break;
        }
        at = end;
    }
    until
}
