//! Property tests: random valid expressions, zones and instants give strictly increasing fire times that match the
//! expression (or stand in for a time skipped by DST) and respect start and end dates; nothing panics on any input;
//! crontab strings agree with croner's own search wherever DST plays no part.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};

use super::*;

const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "America/St_Johns",
];
const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FIRES_PER_CASE: usize = 30;
/// Brute-force checks scan second by second, so only over short stretches.
const BRUTE_FORCE_SECONDS: i64 = 3 * 3600;

/// `*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n` within `low..=high`.
fn numeric_term(low: u32, high: u32) -> impl Strategy<Value = String> {
    (low..=high, low..=high, 1..=(high - low).max(1), 0..6u8).prop_map(move |(a, b, step, kind)| {
        let (a, b) = (a.min(b), a.max(b));
        match kind {
            0 => "*".to_string(),
            1 => format!("*/{}", step.min(high - low).max(1)),
            2 => a.to_string(),
            3 => format!("{a}-{b}"),
            // A step must not exceed the range it walks; `a-a` has none to walk.
            4 if b > a => format!("{a}-{b}/{}", step.min(b - a)),
            5 if high > a => format!("{a}/{}", step.min(high - a)),
            _ => a.to_string(),
        }
    })
}

fn term(field: &'static str) -> BoxedStrategy<String> {
    let (low, high) = match field {
        "year" => (2020, 2045),
        "month" => (1, 12),
        "day" => (1, 31),
        "week" => (1, 53),
        "day_of_week" => (0, 6),
        "hour" => (0, 23),
        _ => (0, 59),
    };
    let numeric = numeric_term(low, high).boxed();
    match field {
        "month" => prop_oneof![3 => numeric, 1 => (0..12usize, 0..12usize).prop_map(|(a, b)| if a <= b {
            format!("{}-{}", MONTHS[a], MONTHS[b])
        } else {
            MONTHS[a].to_uppercase()
        })]
        .boxed(),
        "day_of_week" => prop_oneof![3 => numeric, 1 => (0..7usize, 0..7usize).prop_map(|(a, b)| if a <= b {
            format!("{}-{}", WEEKDAYS[a], WEEKDAYS[b])
        } else {
            WEEKDAYS[a].to_string()
        })]
        .boxed(),
        "day" => prop_oneof![
            4 => numeric,
            1 => Just("last".to_string()),
            1 => (0..6usize, 0..7usize).prop_map(|(position, weekday)| {
                let position = ["1st", "2nd", "3rd", "4th", "5th", "last"][position];
                format!("{position} {}", WEEKDAYS[weekday])
            })
        ]
        .boxed(),
        _ => numeric,
    }
}

fn expression(field: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(term(field), 1..=3).prop_map(|terms| terms.join(","))
}

/// A spec with a random subset of the fields (at least one), finer fields more often so fires are frequent.
fn fields() -> impl Strategy<Value = Map<String, Value>> {
    let optional = |field: &'static str, weight: u32| prop_oneof![10 - weight => Just(None), weight => expression(field).prop_map(Some)];
    (
        optional("year", 1),
        optional("month", 2),
        optional("day", 3),
        optional("week", 1),
        optional("day_of_week", 3),
        optional("hour", 5),
        optional("minute", 5),
        optional("second", 4),
    )
        .prop_map(|values| {
            let (year, month, day, week, day_of_week, hour, minute, second) = values;
            let names = ["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"];
            let values = [year, month, day, week, day_of_week, hour, minute, second];
            let mut map: Map<String, Value> =
                names.iter().zip(values).filter_map(|(name, v)| Some((name.to_string(), Value::String(v?)))).collect();
            if map.is_empty() {
                map.insert("minute".into(), json!("*/7"));
            }
            map
        })
}

/// Instants 1990–2060, sometimes with a fraction of a second.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (631_152_000i64..2_840_140_800, prop_oneof![Just(0u32), 1..1_000_000_000u32])
        .prop_map(|(seconds, nanos)| DateTime::from_timestamp(seconds, nanos).unwrap())
}

fn zone() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&ZONES[..])
}

/// Failing cases are kept beside this file (proptest's default would put them outside the module's folder).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "src/trigger/cron/properties.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn is_acceptable_fire(trigger: &CronTrigger, fire: DateTime<Utc>) -> bool {
    trigger.matches(fire) || dst::is_gap_fire(trigger.timezone, &trigger.schedule, fire)
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn fire_times_increase_match_and_stay_within_bounds(
        mut fields in fields(),
        zone in zone(),
        now in instant(),
        start_offset in prop::option::weighted(0.2, 0i64..90 * 86400),
        end_offset in prop::option::weighted(0.2, 0i64..400 * 86400),
    ) {
        fields.insert("timezone".into(), json!(zone));
        let start_date = start_offset.map(|s| now + Duration::seconds(s));
        let end_date = end_offset.map(|s| start_date.unwrap_or(now) + Duration::seconds(s));
        if let Some(start) = start_date {
            fields.insert("start_date".into(), json!(start.to_rfc3339()));
        }
        if let Some(end) = end_date {
            fields.insert("end_date".into(), json!(end.to_rfc3339()));
        }
        let spec: CronSpec = serde_json::from_value(Value::Object(fields.clone())).unwrap();
        let trigger = spec.compile(Tz::UTC).map_err(|err| TestCaseError::fail(format!("{err}")))?;
        let earliest = start_date.map_or(now, |start| start.max(now));
        let mut previous: Option<DateTime<Utc>> = None;
        for _ in 0..FIRES_PER_CASE {
            let Some(fire) = trigger.next_fire_time(previous, now) else { break };
            prop_assert!(previous.is_none_or(|p| fire > p), "{fire} after {previous:?} for {fields:?}");
            prop_assert!(fire >= earliest, "{fire} before {earliest}");
            prop_assert!(end_date.is_none_or(|end| fire <= end), "{fire} after end_date");
            prop_assert_eq!(fire.timestamp_subsec_nanos(), 0);
            prop_assert!(is_acceptable_fire(&trigger, fire), "{fire} does not match {fields:?}");
            previous = Some(fire);
        }
    }

    /// No matching second is passed over: every second between the start and the next fire fails to match.
    #[test]
    fn no_matching_time_is_skipped_in_utc(fields in fields(), now in instant()) {
        let trigger = serde_json::from_value::<CronSpec>(Value::Object(fields.clone())).unwrap().compile(Tz::UTC).unwrap();
        let start = ceil_to_second(now).unwrap();
        let fire = trigger.next_fire_time(None, now);
        let scan_end = fire.unwrap_or(start + Duration::seconds(BRUTE_FORCE_SECONDS)).min(start + Duration::seconds(BRUTE_FORCE_SECONDS));
        let mut t = start;
        while t < scan_end {
            prop_assert!(!trigger.matches(t), "{t} matches {fields:?} but the next fire is {fire:?}");
            t += Duration::seconds(1);
        }
        if let Some(fire) = fire {
            prop_assert!(trigger.matches(fire));
        }
    }

    /// Outside DST the crontab path must give exactly croner's answers.
    #[test]
    fn crontab_agrees_with_croner_in_utc(
        minute in prop_oneof![Just("*".to_string()), numeric_term(0, 59)],
        hour in prop_oneof![Just("*".to_string()), numeric_term(0, 23)],
        day in prop_oneof![Just("*".to_string()), numeric_term(1, 31), Just("L".to_string()), (1..=28u32).prop_map(|d| format!("{d}W"))],
        month in prop_oneof![Just("*".to_string()), numeric_term(1, 12)],
        weekday in prop_oneof![Just("*".to_string()), numeric_term(0, 6), (0..=6u32, 1..=5u32).prop_map(|(d, n)| format!("{d}#{n}")), (0..=6u32).prop_map(|d| format!("{d}L"))],
        now in (631_152_000i64..2_840_140_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap()),
    ) {
        let text = format!("{minute} {hour} {day} {month} {weekday}");
        // croner (following OCPS) rejects the `a/n` form APScheduler accepts; those cases say nothing here.
        let Ok(cron) = croner::Cron::from_str(&text) else { return Ok(()) };
        let trigger = CronSpec { crontab: Some(text.clone()), ..Default::default() }.compile(Tz::UTC).unwrap();
        let Ok(expected) = cron.find_next_occurrence(&now, true) else { return Ok(()) };
        prop_assert_eq!(trigger.next_fire_time(None, now), Some(expected), "{}", text);
    }

    #[test]
    fn any_field_value_is_accepted_or_rejected_without_panicking(
        field in prop::sample::select(&["year", "month", "day", "week", "day_of_week", "hour", "minute", "second"][..]),
        value in prop_oneof!["\\PC{0,12}", "[0-9a-zA-Z*/, #-]{0,16}", "[0-9*/,-]{0,24}"],
        now in instant(),
    ) {
        let spec: CronSpec = serde_json::from_value(json!({ field: value })).unwrap();
        match spec.compile(Tz::UTC) {
            Ok(trigger) => { let _ = trigger.next_fire_time(None, now); }
            Err(err) => prop_assert_eq!(err.field, field),
        }
    }

    #[test]
    fn any_crontab_is_accepted_or_rejected_without_panicking(
        text in prop_oneof!["\\PC{0,20}", "[0-9a-zA-Z*/,#?@LW -]{0,30}", "([0-9*/,LW#-]{1,6} ){4}[0-9*/,LW#-]{1,6}"],
        now in instant(),
    ) {
        let spec = CronSpec { crontab: Some(text), ..Default::default() };
        match spec.compile(Tz::UTC) {
            Ok(trigger) => { let _ = trigger.next_fire_time(None, now); }
            Err(err) => prop_assert_eq!(err.field, "crontab"),
        }
    }

}

proptest! {
    // Each case scans four hours second by second.
    #![proptest_config(config(40))]

    /// Around real transitions, the fire times are exactly the DST rule applied second by second: every instant
    /// whose wall time matches, except a fixed-time job's second occurrences, plus the end of each gap that
    /// swallowed a match.
    #[test]
    fn fires_around_transitions_follow_the_rule(
        transition in prop::sample::select(&TRANSITIONS[..]),
        hour in prop_oneof![Just("*".to_string()), numeric_term(0, 23)],
        minute in numeric_term(0, 59),
        second in prop_oneof![3 => Just("0".to_string()), 1 => numeric_term(0, 59)],
    ) {
        let (zone, at) = transition;
        let trigger = serde_json::from_value::<CronSpec>(json!({
            "timezone": zone, "hour": hour, "minute": minute, "second": second
        }))
        .unwrap()
        .compile(Tz::UTC)
        .unwrap();
        let at = DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&Utc);
        let (from, to) = (at - Duration::seconds(TRANSITION_WINDOW_SECONDS), at + Duration::seconds(TRANSITION_WINDOW_SECONDS));

        let tz = trigger.timezone;
        let fixed = trigger.schedule.is_fixed_time();
        let mut expected = Vec::new();
        let mut t = from;
        while t < to {
            let second_occurrence = matches!(wall::resolve(tz, wall::wall_time(tz, t)), wall::Local::Repeated(_, later) if later == t);
            if (trigger.matches(t) && !(fixed && second_occurrence)) || dst::is_gap_fire(tz, &trigger.schedule, t) {
                expected.push(t);
            }
            t += Duration::seconds(1);
        }

        let mut actual = Vec::new();
        let mut previous = None;
        while let Some(fire) = trigger.next_fire_time(previous, from) {
            if fire >= to {
                break;
            }
            actual.push(fire);
            previous = Some(fire);
        }
        prop_assert_eq!(actual, expected, "{} {:?}", zone, trigger.schedule);
    }
}

/// Half a window around each transition: wide enough for Lord Howe's and Chatham's odd shifts and Santiago's
/// midnight ones, narrow enough to scan second by second.
const TRANSITION_WINDOW_SECONDS: i64 = 2 * 3600;

/// The 2026 transitions (UTC) of the zones whose DST is unusual.
const TRANSITIONS: [(&str, &str); 10] = [
    ("Europe/Berlin", "2026-03-29T01:00:00Z"),
    ("Europe/Berlin", "2026-10-25T01:00:00Z"),
    ("America/New_York", "2026-03-08T07:00:00Z"),
    ("America/New_York", "2026-11-01T06:00:00Z"),
    ("Australia/Lord_Howe", "2026-04-04T15:00:00Z"),
    ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),
    ("America/Santiago", "2026-04-05T03:00:00Z"),
    ("America/Santiago", "2026-09-06T04:00:00Z"),
    ("Pacific/Chatham", "2026-04-04T14:00:00Z"),
    ("Pacific/Chatham", "2026-09-26T14:00:00Z"),
];
