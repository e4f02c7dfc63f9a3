//! The compiled form of a cron expression: which wall-clock times match, as bitmasks per field, and the search
//! for the first matching wall time at or after a given one. Both the APScheduler fields and crontab strings
//! compile to a `Schedule`, so one search (and one DST rule, in `mod.rs`) serves both.
//!
//! Everything a day-of-month or weekday rule can depend on inside one month (`last`, `last fri`, `2nd mon`,
//! crontab's `L`, `W`, `#`) is fixed by the month's length and the weekday of its first day, so those rules are
//! evaluated once per (length, weekday) pair into a table of day masks. Only the ISO week depends on the year,
//! and it is applied per month when the expression restricts it.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};

/// APScheduler's year range (`MIN_VALUES`/`MAX_VALUES`): no fire time is ever earlier or later.
pub const FIRST_YEAR: i32 = 1970;
pub const LAST_YEAR: i32 = 9999;

const ALL_MONTHS: u16 = 0b1_1111_1111_1110;
const YEAR_COUNT: usize = (LAST_YEAR - FIRST_YEAR + 1) as usize;
const YEAR_WORDS: usize = YEAR_COUNT.div_ceil(64);

/// Months are 28 to 31 days long; the day table has one row per length.
const SHORTEST_MONTH: u32 = 28;
const MONTH_LENGTHS: usize = 4;

/// A set of years in `FIRST_YEAR..=LAST_YEAR`.
#[derive(Clone, PartialEq, Eq)]
pub struct YearSet {
    words: Box<[u64; YEAR_WORDS]>,
}

impl std::fmt::Debug for YearSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count: u32 = self.words.iter().map(|w| w.count_ones()).sum();
        write!(f, "YearSet({count} years from {:?})", self.next_at_or_after(FIRST_YEAR))
    }
}

impl YearSet {
    pub fn empty() -> Self {
        Self { words: Box::new([0; YEAR_WORDS]) }
    }

    pub fn all() -> Self {
        let mut set = Self::empty();
        set.insert_every(FIRST_YEAR, LAST_YEAR, 1);
        set
    }

    /// Every `step`th year from `first` to `last`. `*` is 8 030 years, and a cron trigger is compiled on every API
    /// call that shows or saves its job, so a plain range fills whole words at once.
    pub fn insert_every(&mut self, first: i32, last: i32, step: usize) {
        if step != 1 {
            (first..=last).step_by(step.max(1)).for_each(|year| self.insert(year));
            return;
        }
        let (first, last) = (first.max(FIRST_YEAR), last.min(LAST_YEAR));
        let mut index = (first - FIRST_YEAR) as usize;
        while first <= last && index <= (last - FIRST_YEAR) as usize {
            if index.is_multiple_of(64) && index + 63 <= (last - FIRST_YEAR) as usize {
                self.words[index / 64] = u64::MAX;
                index += 64;
            } else {
                self.words[index / 64] |= 1 << (index % 64);
                index += 1;
            }
        }
    }

    fn is_all(&self) -> bool {
        static ALL: std::sync::LazyLock<YearSet> = std::sync::LazyLock::new(YearSet::all);
        *self == *ALL
    }

    /// Years outside the range are ignored: no fire time can fall in them.
    pub fn insert(&mut self, year: i32) {
        if (FIRST_YEAR..=LAST_YEAR).contains(&year) {
            let index = (year - FIRST_YEAR) as usize;
            self.words[index / 64] |= 1 << (index % 64);
        }
    }

    pub fn contains(&self, year: i32) -> bool {
        (FIRST_YEAR..=LAST_YEAR).contains(&year) && {
            let index = (year - FIRST_YEAR) as usize;
            self.words[index / 64] & (1 << (index % 64)) != 0
        }
    }

    pub fn next_at_or_after(&self, year: i32) -> Option<i32> {
        if year > LAST_YEAR {
            return None;
        }
        let index = (year.max(FIRST_YEAR) - FIRST_YEAR) as usize;
        let mut word = index / 64;
        let mut bits = self.words[word] & (u64::MAX << (index % 64));
        loop {
            if bits != 0 {
                return Some(FIRST_YEAR + (word * 64) as i32 + bits.trailing_zeros() as i32);
            }
            word += 1;
            if word == YEAR_WORDS {
                return None;
            }
            bits = self.words[word];
        }
    }
}

/// Day-of-month masks (bit `d` for day `d`) indexed by month length and the weekday of the month's first day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTable {
    masks: [[u32; 7]; MONTH_LENGTHS],
}

impl DayTable {
    /// Evaluate `matches(day, month_length, weekday_of_first)` for every day of every kind of month.
    pub fn build(mut matches: impl FnMut(u32, u32, Weekday) -> bool) -> Self {
        let mut masks = [[0; 7]; MONTH_LENGTHS];
        for (row, length) in masks.iter_mut().zip(SHORTEST_MONTH..) {
            for (mask, first) in row.iter_mut().zip(WEEK) {
                for day in 1..=length {
                    if matches(day, length, first) {
                        *mask |= 1 << day;
                    }
                }
            }
        }
        Self { masks }
    }

    /// Every day of every month matches.
    fn is_full(&self) -> bool {
        self.masks.iter().zip(SHORTEST_MONTH..).all(|(row, length)| row.iter().all(|mask| *mask == all_days(length)))
    }

    fn mask(&self, month_length: u32, first: Weekday) -> u32 {
        self.masks[(month_length - SHORTEST_MONTH) as usize][first.num_days_from_monday() as usize]
    }
}

/// Weekdays from Monday, APScheduler's order (`day_of_week` 0 = mon).
pub const WEEK: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

/// Which wall-clock times match: a time matches when every field's bit is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub years: YearSet,
    /// Bits 1–12.
    pub months: u16,
    pub days: DayTable,
    /// ISO weeks (bits 1–53), `None` when every week matches (skips the per-month week computation).
    pub weeks: Option<u64>,
    /// Bits 0–23.
    pub hours: u32,
    /// Bits 0–59.
    pub minutes: u64,
    /// Bits 0–59.
    pub seconds: u64,
    /// Every date in the searchable years matches (only the time of day is restricted), so the date search is
    /// skipped: the common case of dense expressions.
    every_date: bool,
}

impl Schedule {
    pub fn new(
        years: YearSet,
        months: u16,
        days: DayTable,
        weeks: Option<u64>,
        (hours, minutes, seconds): (u32, u64, u64),
    ) -> Self {
        let every_date = years.is_all() && months == ALL_MONTHS && weeks.is_none() && days.is_full();
        Self { years, months, days, weeks, hours, minutes, seconds, every_date }
    }

    /// A fixed-time job (docs/triggers.md): second, minute and hour each a single value. Only these fire once in a
    /// repeated (fall-back) hour.
    pub fn is_fixed_time(&self) -> bool {
        self.hours.count_ones() == 1 && self.minutes.count_ones() == 1 && self.seconds.count_ones() == 1
    }

    /// No date can ever match (`day=31, month=feb`; a week that none of the months reach never matches either, but
    /// is only found out by the bounded search).
    pub fn never_matches(&self) -> bool {
        self.hours == 0
            || self.minutes == 0
            || self.seconds == 0
            || self.years.next_at_or_after(FIRST_YEAR).is_none()
            || {
                let possible_months = (1..=12).filter(|m| self.months & (1 << m) != 0);
                !possible_months.into_iter().any(|month| {
                    possible_lengths(month)
                        .iter()
                        .any(|&length| WEEK.iter().any(|&first| self.days.mask(length, first) != 0))
                })
            }
    }

    pub fn matches(&self, wall: NaiveDateTime) -> bool {
        let date = wall.date();
        self.hours & (1 << wall.hour()) != 0
            && self.minutes & (1 << wall.minute()) != 0
            && self.seconds & (1 << wall.second()) != 0
            && self.years.contains(date.year())
            && self.months & (1 << date.month()) != 0
            && self.day_mask(date.year(), date.month()) & (1 << date.day()) != 0
    }

    /// The first matching wall time at or after `from`; `None` when there is none up to `LAST_YEAR`.
    pub fn next_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let date = self.next_matching_date(from.date())?;
        if date == from.date() {
            if let Some(time) = self.next_time_of_day(from.hour(), from.minute(), from.second()) {
                return Some(date.and_time(time));
            }
            let date = self.next_matching_date(date.succ_opt()?)?;
            return Some(date.and_time(self.first_time_of_day()));
        }
        Some(date.and_time(self.first_time_of_day()))
    }

    fn first_time_of_day(&self) -> NaiveTime {
        let (h, m, s) = (first_bit(self.hours.into()), first_bit(self.minutes), first_bit(self.seconds));
        NaiveTime::from_hms_opt(h, m, s).unwrap_or(NaiveTime::MIN)
    }

    /// The first matching time of day at or after h:m:s, carrying seconds into minutes into hours.
    fn next_time_of_day(&self, hour: u32, minute: u32, second: u32) -> Option<NaiveTime> {
        let first_minute = first_bit(self.minutes);
        let first_second = first_bit(self.seconds);
        let next_hour = next_bit(self.hours.into(), hour)?;
        if next_hour > hour {
            return NaiveTime::from_hms_opt(next_hour, first_minute, first_second);
        }
        if let Some(next_minute) = next_bit(self.minutes, minute) {
            if next_minute > minute {
                return NaiveTime::from_hms_opt(hour, next_minute, first_second);
            }
            if let Some(next_second) = next_bit(self.seconds, second) {
                return NaiveTime::from_hms_opt(hour, minute, next_second);
            }
            if let Some(later_minute) = next_bit(self.minutes, minute + 1) {
                return NaiveTime::from_hms_opt(hour, later_minute, first_second);
            }
        }
        let later_hour = next_bit(self.hours.into(), hour + 1)?;
        NaiveTime::from_hms_opt(later_hour, first_minute, first_second)
    }

    /// The first matching date at or after `from`, walking years, then months, then the month's day mask.
    fn next_matching_date(&self, from: NaiveDate) -> Option<NaiveDate> {
        if self.every_date && (FIRST_YEAR..=LAST_YEAR).contains(&from.year()) {
            return Some(from);
        }
        let (mut year, mut month, mut day) = (from.year(), from.month(), from.day());
        loop {
            let next_year = self.years.next_at_or_after(year)?;
            if next_year != year {
                (year, month, day) = (next_year, 1, 1);
            }
            match next_bit(self.months.into(), month) {
                None => {
                    (year, month, day) = (year + 1, 1, 1);
                    continue;
                }
                Some(next_month) if next_month != month => (month, day) = (next_month, 1),
                Some(_) => {}
            }
            let candidates = self.day_mask(year, month) & (u32::MAX << day);
            if candidates != 0 {
                return NaiveDate::from_ymd_opt(year, month, candidates.trailing_zeros());
            }
            (month, day) = (month + 1, 1);
            if month > 12 {
                (year, month) = (year + 1, 1);
            }
        }
    }

    fn day_mask(&self, year: i32, month: u32) -> u32 {
        let length = days_in_month(year, month);
        let mask = self.days.mask(length, first_weekday(year, month));
        match (self.weeks, NaiveDate::from_ymd_opt(year, month, 1)) {
            (None, _) => mask,
            (Some(weeks), Some(first)) => mask & iso_week_mask(first, length, weeks),
            (Some(_), None) => 0,
        }
    }
}

/// The weekday of the first of a month, by Sakamoto's method: this runs once per searched month, and chrono's
/// date construction costs a good share of a whole search.
fn first_weekday(year: i32, month: u32) -> Weekday {
    const MONTH_OFFSETS: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if month < 3 { year - 1 } else { year };
    let days_from_sunday =
        (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400) + MONTH_OFFSETS[(month - 1) as usize % 12] + 1)
            .rem_euclid(7);
    WEEK[((days_from_sunday + 6) % 7) as usize]
}

/// Bits 1..=length.
fn all_days(length: u32) -> u32 {
    (u32::MAX >> (32 - length)) << 1
}

/// Days of the month (bits) whose ISO week is in `weeks`.
fn iso_week_mask(first: NaiveDate, length: u32, weeks: u64) -> u32 {
    let mut mask = 0;
    let mut week = first.iso_week().week();
    for day in 1..=length {
        let date = first + chrono::Days::new(u64::from(day - 1));
        // The week number only changes on Mondays (and may wrap at the year's end), so recompute it there.
        if day > 1 && date.weekday() == Weekday::Mon {
            week = date.iso_week().week();
        }
        if weeks & (1 << week) != 0 {
            mask |= 1 << day;
        }
    }
    mask
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The lengths a month can have, in any year.
fn possible_lengths(month: u32) -> &'static [u32] {
    match month {
        2 => &[28, 29],
        4 | 6 | 9 | 11 => &[30],
        _ => &[31],
    }
}

/// The lowest set bit at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let above = mask >> from;
    (above != 0).then(|| from + above.trailing_zeros())
}

fn first_bit(mask: u64) -> u32 {
    mask.trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserting_a_range_of_years_sets_exactly_the_years_one_by_one_would() {
        let ranges = [
            (FIRST_YEAR, LAST_YEAR, 1),
            (1900, 2100, 1),
            (2026, 2026, 1),
            (FIRST_YEAR + 63, FIRST_YEAR + 64 * 3, 1),
            (FIRST_YEAR + 64, FIRST_YEAR + 127, 1),
            (9000, 12000, 1),
            (1960, 2100, 7),
            (2000, 2050, 4),
            (3000, 2000, 1),
        ];
        for (first, last, step) in ranges {
            let mut by_range = YearSet::empty();
            by_range.insert_every(first, last, step);
            let mut one_by_one = YearSet::empty();
            (first..=last).step_by(step).for_each(|year| one_by_one.insert(year));
            assert_eq!(by_range, one_by_one, "{first}..={last} step {step}");
        }
        assert!(YearSet::all().is_all());
        let mut all_but_one = YearSet::all();
        all_but_one.words[0] &= !1;
        assert!(!all_but_one.is_all());
    }

    fn every_day() -> DayTable {
        DayTable::build(|_, _, _| true)
    }

    fn schedule(hours: u32, minutes: u64, seconds: u64) -> Schedule {
        Schedule::new(YearSet::all(), ALL_MONTHS, every_day(), None, (hours, minutes, seconds))
    }

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn year_set_finds_the_next_year_across_words() {
        let mut years = YearSet::empty();
        years.insert(2100);
        years.insert(1969);
        years.insert(10_000);
        assert_eq!(years.next_at_or_after(1900), Some(2100));
        assert_eq!(years.next_at_or_after(2100), Some(2100));
        assert_eq!(years.next_at_or_after(2101), None);
        assert_eq!(years.next_at_or_after(i32::MAX), None);
        assert!(!years.contains(1969));
        assert_eq!(YearSet::all().next_at_or_after(LAST_YEAR), Some(LAST_YEAR));
    }

    #[test]
    fn time_of_day_carries_seconds_into_minutes_into_hours() {
        // 09:00:00, 09:00:30, 09:30:00, 09:30:30, 17:00:00 …
        let s = schedule(1 << 9 | 1 << 17, 1 | 1 << 30, 1 | 1 << 30);
        assert_eq!(s.next_match(at("2026-01-01 09:00:31")), Some(at("2026-01-01 09:30:00")));
        assert_eq!(s.next_match(at("2026-01-01 09:30:31")), Some(at("2026-01-01 17:00:00")));
        assert_eq!(s.next_match(at("2026-01-01 17:30:31")), Some(at("2026-01-02 09:00:00")));
        assert_eq!(s.next_match(at("2026-01-01 00:00:00")), Some(at("2026-01-01 09:00:00")));
        assert_eq!(s.next_match(at("2026-01-01 09:00:30")), Some(at("2026-01-01 09:00:30")));
    }

    #[test]
    fn the_last_day_of_the_last_year_ends_the_search() {
        let s = schedule(1, 1, 1);
        assert_eq!(s.next_match(at("9999-12-31 00:00:00")), Some(at("9999-12-31 00:00:00")));
        assert_eq!(s.next_match(at("9999-12-31 00:00:01")), None);
    }

    #[test]
    fn a_schedule_without_date_restrictions_skips_the_date_search() {
        let dense = schedule(u32::MAX >> 8, u64::MAX >> 4, 1);
        assert!(dense.every_date);
        assert_eq!(dense.next_match(at("2026-02-28 23:59:59")), Some(at("2026-03-01 00:00:00")));
        assert_eq!(dense.next_match(at("1969-12-31 23:00:00")), Some(at("1970-01-01 00:00:00")));
        assert_eq!(dense.next_match(at("9999-12-31 23:59:01")), None);
        let march = Schedule::new(YearSet::all(), 1 << 3, every_day(), None, (1, 1, 1));
        assert!(!march.every_date);
    }

    #[test]
    fn first_weekday_agrees_with_chrono() {
        for year in [1970, 1999, 2000, 2024, 2100, 9999] {
            for month in 1..=12 {
                let date = NaiveDate::from_ymd_opt(year, month, 1).unwrap();
                assert_eq!(first_weekday(year, month), date.weekday(), "{date}");
                assert_eq!(
                    days_in_month(year, month),
                    date.with_day(29).map_or(28, |_| 29).max(match month {
                        2 => 0,
                        4 | 6 | 9 | 11 => 30,
                        _ => 31,
                    })
                );
            }
        }
    }

    #[test]
    fn iso_weeks_wrap_at_the_year_end() {
        // 2026-12-28 (Monday) starts ISO week 53 of 2026; 2027-01-04 starts week 1 of 2027.
        let first = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let week_53 = iso_week_mask(first, 31, 1 << 53);
        assert_eq!(week_53, (28..=31).map(|d| 1u32 << d).sum::<u32>());
        let first = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap();
        assert_eq!(iso_week_mask(first, 31, 1 << 53), 0b1110);
    }

    #[test]
    fn an_impossible_date_is_known_at_once() {
        let thirty_first = DayTable::build(|day, _, _| day == 31);
        let february = Schedule::new(YearSet::all(), 1 << 2, thirty_first.clone(), None, (1, 1, 1));
        assert!(february.never_matches());
        let february_or_march = Schedule::new(YearSet::all(), 1 << 2 | 1 << 3, thirty_first, None, (1, 1, 1));
        assert!(!february_or_march.never_matches());
    }
}
