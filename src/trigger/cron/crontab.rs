//! `crontab` strings, read by croner in the standard way (0 and 7 are Sunday; `L`, `W`, `#`, `?`; `@yearly`,
//! `@monthly`, `@weekly`, `@daily`, `@hourly`; a day matches when its day of month *or* its weekday matches, unless
//! one of them is `*`). Exactly five fields: seconds are the `second` field's job in the fields form.
//!
//! croner parses and matches, but its search is not used: its DST rule skips a non-fixed job's times inside a
//! spring-forward gap (`*/15 2 * * *` does not fire on the day of the gap), where apsched fires them once after
//! the gap. So the parsed pattern is turned into the same `Schedule` as the fields form.

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate, Weekday};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::schedule::{DayTable, Schedule, WEEK, YearSet, days_in_month};
use crate::trigger::TriggerError;

const FIELD: &str = "crontab";

/// Some real month for each (length, weekday of the 1st): croner's day rules need a real year and month, and they
/// depend on nothing else.
static SAMPLE_MONTHS: LazyLock<[[(i32, u32); 7]; 4]> = LazyLock::new(|| {
    let mut samples = [[(0, 0); 7]; 4];
    // Every combination occurs within any 28-year cycle; Februaries of 29 days need leap years, so look wider.
    for year in 2000..2060 {
        for month in 1..=12 {
            let first = NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a month exists");
            let length = days_in_month(year, month);
            samples[(length - 28) as usize][first.weekday().num_days_from_monday() as usize] = (year, month);
        }
    }
    samples
});

pub fn parse(text: &str) -> Result<Schedule, TriggerError> {
    let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
    let cron = parser.parse(text).map_err(|err| {
        TriggerError::new(
            FIELD,
            format!(
                "{text:?} is not a crontab expression ({err}): use five fields (minute hour day month day_of_week) \
                 or @yearly, @monthly, @weekly, @daily, @hourly"
            ),
        )
    })?;
    schedule_of(&cron).map_err(|err| TriggerError::new(FIELD, format!("{text:?} cannot be evaluated: {err}")))
}

fn schedule_of(cron: &Cron) -> Result<Schedule, croner::errors::CronError> {
    let pattern = &cron.pattern;
    let mut seconds = 0u64;
    let mut minutes = 0u64;
    for value in 0..60 {
        seconds |= u64::from(pattern.second_match(value)?) << value;
        minutes |= u64::from(pattern.minute_match(value)?) << value;
    }
    let mut hours = 0u32;
    for value in 0..24 {
        hours |= u32::from(pattern.hour_match(value)?) << value;
    }
    let mut months = 0u16;
    for value in 1..=12 {
        months |= u16::from(pattern.month_match(value)?) << value;
    }
    let mut failure = None;
    let days = DayTable::build(|day, length, first| {
        let (year, month) = SAMPLE_MONTHS[(length - 28) as usize][first.num_days_from_monday() as usize];
        let weekday = WEEK[((first.num_days_from_monday() + day - 1) % 7) as usize];
        pattern.day_match(year, month, day, croner_weekday(weekday)).unwrap_or_else(|err| {
            failure = Some(err);
            false
        })
    });
    if let Some(err) = failure {
        return Err(err);
    }
    // Five fields carry no year: every year matches.
    Ok(Schedule::new(YearSet::all(), months, days, None, (hours, minutes, seconds)))
}

fn croner_weekday(weekday: Weekday) -> croner::Weekday {
    croner::Weekday::from_days_from_sunday(weekday.num_days_from_sunday())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_month_exists_for_every_length_and_first_weekday() {
        for (row, length) in SAMPLE_MONTHS.iter().zip(28..) {
            for (&(year, month), first) in row.iter().zip(WEEK) {
                let date = NaiveDate::from_ymd_opt(year, month, 1).expect("a sample month");
                assert_eq!((days_in_month(year, month), date.weekday()), (length, first));
            }
        }
    }

    #[test]
    fn the_schedule_holds_croners_reading() {
        let schedule = parse("*/20 9-10 L * MON").unwrap();
        assert_eq!(schedule.seconds, 1);
        assert_eq!(schedule.minutes, 1 | 1 << 20 | 1 << 40);
        assert_eq!(schedule.hours, 1 << 9 | 1 << 10);
        assert!(!schedule.is_fixed_time());
        assert!(parse("0 9 * * *").unwrap().is_fixed_time());
    }
}
