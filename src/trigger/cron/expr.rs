//! APScheduler 3's cron field expressions (`triggers/cron/expressions.py`): parsing and validation of one field's
//! value into terms. Validation rejects what APScheduler rejects, and also what it silently reads as something
//! else (trailing text after a name, `last`-prefixed words, a step after names): docs/triggers.md promises stricter
//! validation where APScheduler accepts nonsense.

use chrono::Weekday;

use super::schedule::WEEK;
use crate::trigger::TriggerError;

/// One of the eight fields, with APScheduler's `MIN_VALUES`/`MAX_VALUES` and its default when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    names: Names,
    /// APScheduler's `DEFAULT_VALUES`: what an unset field finer than the finest set one becomes.
    pub default: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    None,
    Months,
    Weekdays,
    /// `day` takes `last`, `last fri` and `2nd mon`.
    DayPositions,
}

pub const YEAR: Field = Field { name: "year", min: 1970, max: 9999, names: Names::None, default: "*" };
pub const MONTH: Field = Field { name: "month", min: 1, max: 12, names: Names::Months, default: "1" };
pub const DAY: Field = Field { name: "day", min: 1, max: 31, names: Names::DayPositions, default: "1" };
pub const WEEK_OF_YEAR: Field = Field { name: "week", min: 1, max: 53, names: Names::None, default: "*" };
pub const DAY_OF_WEEK: Field = Field { name: "day_of_week", min: 0, max: 6, names: Names::Weekdays, default: "*" };
pub const HOUR: Field = Field { name: "hour", min: 0, max: 23, names: Names::None, default: "0" };
pub const MINUTE: Field = Field { name: "minute", min: 0, max: 59, names: Names::None, default: "0" };
pub const SECOND: Field = Field { name: "second", min: 0, max: 59, names: Names::None, default: "0" };

/// APScheduler's field order, coarsest first: the default rule depends on it.
pub const FIELDS: [Field; 8] = [YEAR, MONTH, DAY, WEEK_OF_YEAR, DAY_OF_WEEK, HOUR, MINUTE, SECOND];

const MONTH_NAMES: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const POSITIONS: [&str; 5] = ["1st", "2nd", "3rd", "4th", "5th"];

/// One comma-separated part of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Term {
    /// `*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n` and names: `first..=last` every `step`.
    Values { first: u32, last: u32, step: u32 },
    /// `last` in `day`.
    LastDay,
    /// `1st mon` … `5th mon` in `day`; `nth` counts from 0.
    NthWeekday { nth: u32, weekday: Weekday },
    /// `last fri` in `day`.
    LastWeekday(Weekday),
}

impl Term {
    pub fn contains(&self, value: u32) -> bool {
        match *self {
            Term::Values { first, last, step } => {
                (first..=last).contains(&value) && (value - first).is_multiple_of(step)
            }
            _ => false,
        }
    }

    /// Whether `day` matches, in a month of `length` days starting on `first`.
    pub fn matches_day(&self, day: u32, length: u32, first: Weekday) -> bool {
        let first_occurrence =
            |weekday: Weekday| (weekday.num_days_from_monday() + 7 - first.num_days_from_monday()) % 7 + 1;
        match *self {
            Term::Values { .. } => self.contains(day),
            Term::LastDay => day == length,
            Term::NthWeekday { nth, weekday } => day == first_occurrence(weekday) + 7 * nth,
            Term::LastWeekday(weekday) => {
                let first_hit = first_occurrence(weekday);
                day == first_hit + (length - first_hit) / 7 * 7
            }
        }
    }
}

/// Parse a field's whole value (`"1-5,10,*/20"`) into its terms.
pub fn parse(field: Field, value: &str) -> Result<Vec<Term>, TriggerError> {
    // APScheduler strips the value and splits on commas with any spaces around them.
    value.trim().split(',').map(|term| parse_term(field, term.trim_matches(' '), value)).collect()
}

fn parse_term(field: Field, term: &str, whole: &str) -> Result<Term, TriggerError> {
    let fail = |rule: String| {
        let context = if term == whole.trim() { String::new() } else { format!(" (in {whole:?})") };
        TriggerError::new(field.name, format!("{term:?}{context}: {rule}"))
    };
    let lower = term.to_ascii_lowercase();

    if field.names == Names::DayPositions {
        if lower == "last" {
            return Ok(Term::LastDay);
        }
        if let Some((position, weekday_name)) = lower.split_once(' ') {
            let weekday_name = weekday_name.trim_start_matches(' ');
            let known_position = position == "last" || POSITIONS.contains(&position);
            let weekday = match weekday_named(weekday_name) {
                Some(weekday) => weekday,
                None if known_position => {
                    return Err(fail(format!(
                        "{weekday_name:?} is not a weekday name (mon, tue, wed, thu, fri, sat, sun)"
                    )));
                }
                None => return Err(fail(syntax_rule(field))),
            };
            if position == "last" {
                return Ok(Term::LastWeekday(weekday));
            }
            if let Some(nth) = POSITIONS.iter().position(|p| *p == position) {
                return Ok(Term::NthWeekday { nth: nth as u32, weekday });
            }
            if ["st", "nd", "rd", "th"].iter().any(|suffix| position.ends_with(suffix)) {
                return Err(fail(format!("{position:?} is not a position: use 1st, 2nd, 3rd, 4th, 5th or last")));
            }
            return Err(fail(syntax_rule(field)));
        }
    }

    if lower.starts_with(|c: char| c.is_ascii_alphabetic()) && matches!(field.names, Names::Months | Names::Weekdays) {
        return parse_names(field, &lower).map_err(fail);
    }

    let (range, step) = match term.split_once('/') {
        Some((range, step)) => (range, Some(parse_number(step).ok_or_else(|| fail(syntax_rule(field)))?)),
        None => (term, None),
    };
    if step == Some(0) {
        return Err(fail("the step must be at least 1".into()));
    }
    let (first, last) = if range == "*" {
        (u64::from(field.min), u64::from(field.max))
    } else {
        let (first, last) = match range.split_once('-') {
            Some((first, last)) => (first, Some(last)),
            None => (range, None),
        };
        let first = parse_number(first).ok_or_else(|| fail(syntax_rule(field)))?;
        let last = match last {
            Some(last) => parse_number(last).ok_or_else(|| fail(syntax_rule(field)))?,
            // `a/n` runs to the field's maximum, a lone `a` is just `a`.
            None if step.is_some() => u64::from(field.max),
            None => first,
        };
        if first > last {
            return Err(fail(format!("a range must run from low to high ({first} is above {last})")));
        }
        for value in [first, last] {
            if value < u64::from(field.min) || value > u64::from(field.max) {
                return Err(fail(format!("{value} is out of range: {} takes {}–{}", field.name, field.min, field.max)));
            }
        }
        (first, last)
    };
    // APScheduler's rule: an explicit step wider than the range it walks is a mistake (`*/60` in minute, `5-5/1`).
    if let Some(step) = step
        && step > last - first
    {
        return Err(fail(format!(
            "the step {step} is larger than the range it steps through ({first}–{last}, a span of {})",
            last - first
        )));
    }
    let step = step.unwrap_or(1);
    Ok(Term::Values { first: first as u32, last: last as u32, step: step as u32 })
}

/// `jan`, `jan-mar`, `mon`, `mon-fri`; APScheduler takes no step after names and ignores one if given.
fn parse_names(field: Field, term: &str) -> Result<Term, String> {
    let (kind, names, base): (&str, &[&str], u32) = match field.names {
        Names::Months => ("month", &MONTH_NAMES, 1),
        _ => ("weekday", &WEEKDAY_NAMES, 0),
    };
    let hint = || format!("use {}, or numbers {}–{}", names.join(", "), field.min, field.max);
    if term.contains('/') {
        return Err(format!("a step needs a numeric range (such as {}-{}/2), not names", field.min, field.max));
    }
    let lookup = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .map(|i| i as u32 + base)
            .ok_or_else(|| format!("{name:?} is not a {kind} name: {}", hint()))
    };
    let (first, last) = match term.split_once('-') {
        Some((first, last)) => (lookup(first)?, lookup(last)?),
        None => (lookup(term)?, lookup(term)?),
    };
    if first > last {
        return Err(format!(
            "a range must run from low to high ({} comes after {})",
            names[(first - base) as usize],
            names[(last - base) as usize]
        ));
    }
    Ok(Term::Values { first, last, step: 1 })
}

fn weekday_named(name: &str) -> Option<Weekday> {
    WEEKDAY_NAMES.iter().position(|n| *n == name).map(|i| WEEK[i])
}

/// ASCII digits only (APScheduler's `\d` would also take other scripts' digits); too large saturates, which every
/// range check then rejects.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, digit| n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))))
}

fn syntax_rule(field: Field) -> String {
    let extra = match field.names {
        Names::None => String::new(),
        Names::Months => ", names jan–dec or a name range (jan-mar)".into(),
        Names::Weekdays => ", names mon–sun (0 = mon) or a name range (mon-fri)".into(),
        Names::DayPositions => ", last, last <weekday> (last fri) or <1st–5th> <weekday> (2nd mon)".into(),
    };
    format!(
        "not a {} expression: use *, */n, a, a-b, a-b/n, a/n with numbers {}–{}{extra}, or a comma-separated list of them",
        field.name, field.min, field.max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_parses_into_its_terms() {
        assert_eq!(
            parse(MINUTE, " 5, 10-20/5 ,*/30 ").unwrap(),
            [
                Term::Values { first: 5, last: 5, step: 1 },
                Term::Values { first: 10, last: 20, step: 5 },
                Term::Values { first: 0, last: 59, step: 30 },
            ]
        );
        assert_eq!(parse(DAY_OF_WEEK, "Mon-FRI").unwrap(), [Term::Values { first: 0, last: 4, step: 1 }]);
        assert_eq!(parse(MONTH, "dec").unwrap(), [Term::Values { first: 12, last: 12, step: 1 }]);
        assert_eq!(parse(HOUR, "3/7").unwrap(), [Term::Values { first: 3, last: 23, step: 7 }]);
    }

    #[test]
    fn day_positions_depend_only_on_the_month_shape() {
        // A 31-day month starting on a Wednesday (January 2025): Fridays fall on 3, 10, 17, 24 and 31.
        let [last_friday] = parse(DAY, "last fri").unwrap()[..] else { panic!("one term") };
        let [second_friday] = parse(DAY, "2nd  fri").unwrap()[..] else { panic!("one term") };
        let [fifth_friday] = parse(DAY, "5th fri").unwrap()[..] else { panic!("one term") };
        let fridays = |term: Term, length| {
            (1..=length).filter(|d| term.matches_day(*d, length, Weekday::Wed)).collect::<Vec<_>>()
        };
        assert_eq!(fridays(last_friday, 31), [31]);
        assert_eq!(fridays(second_friday, 31), [10]);
        assert_eq!(fridays(fifth_friday, 31), [31]);
        // With 30 days there is no fifth Friday and the last one is the 24th.
        assert_eq!(fridays(fifth_friday, 30), Vec::<u32>::new());
        assert_eq!(fridays(last_friday, 30), [24]);
        assert!(parse(DAY, "LAST").unwrap()[0].matches_day(28, 28, Weekday::Mon));
    }

    #[test]
    fn numbers_only_in_ascii_and_saturating() {
        assert_eq!(parse_number("007"), Some(7));
        assert_eq!(parse_number("99999999999999999999999"), Some(u64::MAX));
        assert_eq!(parse_number("٣"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("+1"), None);
    }
}
