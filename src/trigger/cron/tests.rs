//! Behaviour of the cron trigger as a client sees it: fire times for each expression form, the default rule, start
//! and end dates, validation, and the DST rule of docs/triggers.md in zones with unusual transitions.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::*;
use crate::trigger::{TriggerSpec, time::format_time};

fn spec(fields: Value) -> CronSpec {
    serde_json::from_value(fields).expect("a well-formed cron spec")
}

fn compile(fields: Value) -> CronTrigger {
    spec(fields).compile(Tz::UTC).expect("a valid cron spec")
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("an RFC 3339 instant").with_timezone(&Utc)
}

/// The first `count` fire times from `now`, each fed back as `previous`, written in the trigger's zone.
fn fires(fields: Value, now: &str, count: usize) -> Vec<String> {
    let trigger = compile(fields);
    let now = instant(now);
    let mut times = Vec::new();
    let mut previous = None;
    while times.len() < count {
        let Some(next) = trigger.next_fire_time(previous, now) else { break };
        times.push(format_time(next, trigger.timezone));
        previous = Some(next);
    }
    times
}

fn error(fields: Value) -> TriggerError {
    spec(fields).compile(Tz::UTC).expect_err("an invalid cron spec")
}

/// The error names the field, quotes the value and states the rule (`words` from the message).
fn assert_rejected(fields: Value, field: &str, value: &str, words: &str) {
    let err = error(fields);
    assert_eq!(err.field, field, "{err}");
    assert!(err.message.contains(&format!("{value:?}")), "message should quote {value:?}: {err}");
    assert!(err.message.contains(words), "message should say {words:?}: {err}");
}

const NOW: &str = "2026-01-01T00:00:00Z";

#[test]
fn star_and_steps() {
    assert_eq!(
        fires(json!({"second": "*"}), "2026-01-01T00:00:00.5Z", 2),
        ["2026-01-01T00:00:01+00:00", "2026-01-01T00:00:02+00:00"]
    );
    assert_eq!(
        fires(json!({"minute": "*/20"}), NOW, 4),
        [
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T00:20:00+00:00",
            "2026-01-01T00:40:00+00:00",
            "2026-01-01T01:00:00+00:00"
        ]
    );
    // `*/n` counts from the field's minimum: day 1, 11, 21, 31.
    assert_eq!(
        fires(json!({"day": "*/10"}), NOW, 5),
        [
            "2026-01-01T00:00:00+00:00",
            "2026-01-11T00:00:00+00:00",
            "2026-01-21T00:00:00+00:00",
            "2026-01-31T00:00:00+00:00",
            "2026-02-01T00:00:00+00:00"
        ]
    );
}

#[test]
fn values_ranges_and_lists() {
    assert_eq!(fires(json!({"minute": 7}), NOW, 2), ["2026-01-01T00:07:00+00:00", "2026-01-01T01:07:00+00:00"]);
    assert_eq!(
        fires(json!({"hour": "22-23"}), NOW, 3),
        ["2026-01-01T22:00:00+00:00", "2026-01-01T23:00:00+00:00", "2026-01-02T22:00:00+00:00"]
    );
    assert_eq!(
        fires(json!({"hour": "1-10/4"}), NOW, 4),
        [
            "2026-01-01T01:00:00+00:00",
            "2026-01-01T05:00:00+00:00",
            "2026-01-01T09:00:00+00:00",
            "2026-01-02T01:00:00+00:00"
        ]
    );
    // `a/n` runs from a to the maximum.
    assert_eq!(
        fires(json!({"minute": "50/4"}), NOW, 4),
        [
            "2026-01-01T00:50:00+00:00",
            "2026-01-01T00:54:00+00:00",
            "2026-01-01T00:58:00+00:00",
            "2026-01-01T01:50:00+00:00"
        ]
    );
    assert_eq!(
        fires(json!({"minute": "5, 1-2 ,*/30"}), NOW, 5),
        [
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T00:01:00+00:00",
            "2026-01-01T00:02:00+00:00",
            "2026-01-01T00:05:00+00:00",
            "2026-01-01T00:30:00+00:00"
        ]
    );
}

#[test]
fn names_are_case_insensitive() {
    assert_eq!(
        fires(json!({"month": "FEB-Mar", "day": 1}), NOW, 3),
        ["2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]
    );
    // 2026-01-02 is a Friday; 0 is Monday, as in APScheduler.
    assert_eq!(
        fires(json!({"day_of_week": "Fri,sun"}), NOW, 3),
        ["2026-01-02T00:00:00+00:00", "2026-01-04T00:00:00+00:00", "2026-01-09T00:00:00+00:00"]
    );
    assert_eq!(fires(json!({"day_of_week": "0"}), NOW, 1), ["2026-01-05T00:00:00+00:00"]);
    assert_eq!(fires(json!({"day_of_week": "mon-wed"}), NOW, 3), fires(json!({"day_of_week": "0-2"}), NOW, 3));
}

#[test]
fn last_day_and_weekday_positions() {
    assert_eq!(
        fires(json!({"day": "last"}), NOW, 3),
        ["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]
    );
    assert_eq!(
        fires(json!({"day": "last fri"}), NOW, 3),
        ["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00", "2026-03-27T00:00:00+00:00"]
    );
    assert_eq!(
        fires(json!({"day": "2nd MON"}), NOW, 3),
        ["2026-01-12T00:00:00+00:00", "2026-02-09T00:00:00+00:00", "2026-03-09T00:00:00+00:00"]
    );
    // Only months with five Fridays: January, May, July, October 2026.
    assert_eq!(
        fires(json!({"day": "5th fri"}), NOW, 3),
        ["2026-01-30T00:00:00+00:00", "2026-05-29T00:00:00+00:00", "2026-07-31T00:00:00+00:00"]
    );
    assert_eq!(
        fires(json!({"day": "1st sun,last"}), NOW, 3),
        ["2026-01-04T00:00:00+00:00", "2026-01-31T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]
    );
}

#[test]
fn iso_week_and_year() {
    // ISO week 1 of 2027 runs from Monday 2027-01-04.
    assert_eq!(
        fires(json!({"year": 2027, "week": 1, "day_of_week": "mon", "hour": 8}), NOW, 2),
        ["2027-01-04T08:00:00+00:00"]
    );
    // Week 53 exists in 2026 (from 2026-12-28) and next in 2032.
    assert_eq!(
        fires(json!({"week": 53, "day_of_week": "sun"}), NOW, 2),
        ["2027-01-03T00:00:00+00:00", "2033-01-02T00:00:00+00:00"]
    );
    assert_eq!(
        fires(json!({"year": "2026-2030/2", "month": 6}), NOW, 3),
        ["2026-06-01T00:00:00+00:00", "2028-06-01T00:00:00+00:00", "2030-06-01T00:00:00+00:00"]
    );
    // `*/4` in year counts from APScheduler's minimum year, 1970.
    assert_eq!(fires(json!({"year": "*/4"}), NOW, 1), ["2026-01-01T00:00:00+00:00"]);
    assert_eq!(fires(json!({"year": "*/4"}), "2026-01-01T00:00:01Z", 1), ["2030-01-01T00:00:00+00:00"]);
}

#[test]
fn unset_fields_finer_than_the_finest_set_one_take_their_minimum() {
    assert_eq!(fires(json!({"hour": 9}), NOW, 2), ["2026-01-01T09:00:00+00:00", "2026-01-02T09:00:00+00:00"]);
    assert_eq!(fires(json!({"month": "feb"}), NOW, 2), ["2026-02-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]);
    assert_eq!(fires(json!({"year": 2027}), NOW, 2), ["2027-01-01T00:00:00+00:00"]);
    // Coarser unset fields are `*`: the 15th, every minute at :30.
    assert_eq!(
        fires(json!({"day": 15, "second": 30}), NOW, 3),
        ["2026-01-15T00:00:30+00:00", "2026-01-15T00:01:30+00:00", "2026-01-15T00:02:30+00:00"]
    );
    // `week` and `day_of_week` default to `*`, not to a minimum: every day of ISO week 2, at midnight.
    assert_eq!(
        fires(json!({"week": 2}), NOW, 3),
        ["2026-01-05T00:00:00+00:00", "2026-01-06T00:00:00+00:00", "2026-01-07T00:00:00+00:00"]
    );
    // `day` is coarser than `day_of_week`, so it is `*` here rather than 1.
    assert_eq!(
        fires(json!({"day_of_week": "sat"}), NOW, 2),
        ["2026-01-03T00:00:00+00:00", "2026-01-10T00:00:00+00:00"]
    );
    // With `month` set, the finer unset `day` becomes 1 even though `day_of_week` is set too.
    assert_eq!(
        fires(json!({"month": 3, "day_of_week": "sun"}), NOW, 2),
        ["2026-03-01T00:00:00+00:00", "2026-03-08T00:00:00+00:00"]
    );
}

#[test]
fn day_and_day_of_week_must_both_match() {
    // Friday the 13th: February and March 2026, then November 2026.
    assert_eq!(
        fires(json!({"day": 13, "day_of_week": "fri"}), NOW, 3),
        ["2026-02-13T00:00:00+00:00", "2026-03-13T00:00:00+00:00", "2026-11-13T00:00:00+00:00"]
    );
}

#[test]
fn start_and_end_dates_bound_the_fire_times() {
    let bounded = json!({"hour": 12, "start_date": "2026-03-01", "end_date": "2026-03-03T12:00:00Z"});
    assert_eq!(
        fires(bounded.clone(), NOW, 5),
        ["2026-03-01T12:00:00+00:00", "2026-03-02T12:00:00+00:00", "2026-03-03T12:00:00+00:00"]
    );
    // A naive start date is read in the trigger's zone.
    assert_eq!(
        fires(json!({"hour": 0, "start_date": "2026-03-01 00:00:00", "timezone": "Europe/Berlin"}), NOW, 1),
        ["2026-03-01T00:00:00+01:00"]
    );
    let trigger = compile(bounded);
    assert_eq!(trigger.next_fire_time(Some(instant("2026-03-03T12:00:00Z")), instant(NOW)), None);
    assert_eq!(trigger.next_fire_time(None, instant("2026-04-01T00:00:00Z")), None);
}

#[test]
fn the_search_starts_at_the_next_whole_second_after_previous() {
    let trigger = compile(json!({"second": "*/5"}));
    let now = instant("2026-01-01T00:00:03Z");
    assert_eq!(trigger.next_fire_time(None, now), Some(instant("2026-01-01T00:00:05Z")));
    assert_eq!(trigger.next_fire_time(None, instant("2026-01-01T00:00:05Z")), Some(instant("2026-01-01T00:00:05Z")));
    // Previous ahead of now (a preview): still strictly after previous.
    assert_eq!(
        trigger.next_fire_time(Some(instant("2026-01-01T00:00:05Z")), now),
        Some(instant("2026-01-01T00:00:10Z"))
    );
    assert_eq!(
        trigger.next_fire_time(Some(instant("2026-01-01T00:00:05.000001Z")), now),
        Some(instant("2026-01-01T00:00:10Z"))
    );
    // The scheduler's case: previous long past, now later — the next fire after previous, as APScheduler.
    assert_eq!(
        trigger.next_fire_time(Some(instant("2026-01-01T00:00:05Z")), instant("2026-01-02T00:00:00Z")),
        Some(instant("2026-01-01T00:00:10Z"))
    );
}

#[test]
fn a_cron_that_can_never_fire_ends_promptly() {
    let started = std::time::Instant::now();
    for fields in [
        json!({"month": "feb", "day": 31}),
        json!({"month": "feb", "day": "5th mon", "year": "2027"}),
        json!({"year": "1999-2020"}),
        json!({"week": 1, "month": "jun"}),
        json!({"week": 53, "month": "jul", "day": "last"}),
    ] {
        assert_eq!(fires(fields.clone(), NOW, 1), Vec::<String>::new(), "{fields}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[test]
fn the_last_possible_fire_is_in_9999() {
    assert_eq!(
        fires(json!({"month": 12, "day": 31, "hour": 23}), "9999-12-31T00:00:00Z", 2),
        ["9999-12-31T23:00:00+00:00"]
    );
    assert_eq!(fires(json!({"year": "*"}), "1960-06-01T00:00:00Z", 1), ["1970-01-01T00:00:00+00:00"]);
}

#[test]
fn search_limits_are_two_days_around_the_years() {
    assert_eq!(DateTime::from_timestamp(FIRST_SEARCH_START, 0), Some(instant("1969-12-30T00:00:00Z")));
    assert_eq!(
        DateTime::from_timestamp(AFTER_LAST_SEARCH_START, 0).unwrap().to_rfc3339(),
        "+10000-01-02T00:00:00+00:00"
    );
}

#[test]
fn instants_at_chrono_limits_neither_panic_nor_fire_outside_the_years() {
    let trigger = compile(json!({"second": "*/5", "timezone": "Asia/Tokyo"}));
    assert_eq!(trigger.next_fire_time(Some(DateTime::<Utc>::MAX_UTC), instant(NOW)), None);
    assert_eq!(trigger.next_fire_time(None, DateTime::<Utc>::MAX_UTC), None);
    let first = trigger.next_fire_time(None, DateTime::<Utc>::MIN_UTC).unwrap();
    assert_eq!(format_time(first, trigger.timezone), "1970-01-01T00:00:00+09:00");
}

#[test]
fn out_of_range_values_are_rejected() {
    assert_rejected(json!({"minute": "61"}), "minute", "61", "minute takes 0–59");
    assert_rejected(json!({"minute": 61}), "minute", "61", "out of range");
    assert_rejected(json!({"hour": "0-24"}), "hour", "0-24", "hour takes 0–23");
    assert_rejected(json!({"day": 0}), "day", "0", "day takes 1–31");
    assert_rejected(json!({"week": 54}), "week", "54", "week takes 1–53");
    assert_rejected(json!({"day_of_week": 7}), "day_of_week", "7", "day_of_week takes 0–6");
    assert_rejected(json!({"year": 1969}), "year", "1969", "year takes 1970–9999");
    assert_rejected(json!({"second": "99999999999999999999999"}), "second", "99999999999999999999999", "out of range");
    assert_rejected(json!({"minute": -1}), "minute", "-1", "not a minute expression");
}

#[test]
fn bad_steps_and_ranges_are_rejected() {
    assert_rejected(json!({"minute": "*/0"}), "minute", "*/0", "at least 1");
    assert_rejected(json!({"minute": "*/60"}), "minute", "*/60", "larger than the range");
    assert_rejected(json!({"minute": "*/99999999999"}), "minute", "*/99999999999", "larger than the range");
    assert_rejected(json!({"minute": "5-5/1"}), "minute", "5-5/1", "larger than the range");
    assert_rejected(json!({"hour": "5-3"}), "hour", "5-3", "low to high");
    assert_rejected(json!({"day_of_week": "sun-mon"}), "day_of_week", "sun-mon", "low to high");
    // The term at fault is quoted, with the whole value for context.
    assert_rejected(json!({"hour": "1,5-3"}), "hour", "1,5-3", "low to high");
}

#[test]
fn unknown_names_and_positions_are_rejected() {
    assert_rejected(json!({"day_of_week": "funday"}), "day_of_week", "funday", "not a weekday name");
    assert_rejected(json!({"month": "janu"}), "month", "janu", "not a month name");
    assert_rejected(json!({"day": "6th mon"}), "day", "6th", "not a position");
    assert_rejected(json!({"day": "2nd moon"}), "day", "moon", "not a weekday name");
    assert_rejected(json!({"day": "mon"}), "day", "mon", "not a day expression");
    assert_rejected(json!({"hour": "mon"}), "hour", "mon", "not a hour expression");
    // APScheduler quietly reads these as `last` and `mon-fri`; here they are mistakes.
    assert_rejected(json!({"day": "lastly"}), "day", "lastly", "not a day expression");
    assert_rejected(json!({"day_of_week": "mon-fri/2"}), "day_of_week", "mon-fri/2", "not names");
}

#[test]
fn malformed_values_are_rejected_without_panicking() {
    for (field, value) in [
        ("minute", ""),
        ("minute", " "),
        ("minute", ",,"),
        ("minute", "1,"),
        ("minute", "-"),
        ("minute", "1-"),
        ("minute", "*/"),
        ("minute", "/5"),
        ("minute", "**"),
        ("minute", "1 2"),
        ("minute", "٣"),
        ("minute", "5\u{0}"),
        ("day", "last   "),
        ("day", "2nd"),
        ("day", "ñ fri"),
        ("month", "ÉTÉ"),
        ("day_of_week", "mon-"),
        ("year", "2026-"),
    ] {
        let err = spec(json!({ field: value })).compile(Tz::UTC);
        if value == "last   " {
            assert!(err.is_ok(), "{value:?} is `last` after trimming");
            continue;
        }
        let err = err.expect_err(value);
        assert_eq!(err.field, field, "{value:?}: {err}");
        assert!(!err.message.is_empty());
    }
}

#[test]
fn other_settings_are_validated() {
    assert_rejected(json!({"hour": 1, "timezone": "Mars/Olympus"}), "timezone", "Mars/Olympus", "IANA");
    assert_rejected(json!({"hour": 1, "start_date": "soon"}), "start_date", "soon", "not a time");
    let err = error(json!({"hour": 1, "start_date": "2026-05-01", "end_date": "2026-04-01"}));
    assert_eq!(err.field, "end_date");
    assert!(err.message.contains("before start_date"), "{err}");
    let err = error(json!({"hour": 1, "jitter": -1.0}));
    assert_eq!(err.field, "jitter");
    assert_rejected(json!({"crontab": "0 9 * * *", "hour": 9}), "crontab", "0 9 * * *", "cannot be combined with hour");
    let err = error(json!({"timezone": "UTC"}));
    assert!(err.message.contains("at least one of"), "{err}");
}

#[test]
fn fields_are_strings_or_integers_and_round_trip() {
    let sent = json!({"hour": 9, "minute": "*/15", "timezone": "Europe/Berlin", "jitter": 2.5});
    let spec = spec(sent.clone());
    assert_eq!(spec.hour.as_deref(), Some("9"));
    assert_eq!(spec.minute.as_deref(), Some("*/15"));
    // Unset fields stay out; each field comes back as it was sent, integer or string.
    assert_eq!(serde_json::to_value(&spec).unwrap(), sent);
    assert!(serde_json::from_value::<CronSpec>(json!({"hour": 9.5})).is_err());
    assert!(serde_json::from_value::<CronSpec>(json!({"hour": true})).is_err());
    assert!(serde_json::from_value::<CronSpec>(json!({"hours": 9})).is_err());
    assert_eq!(serde_json::from_value::<CronSpec>(json!({"hour": null})).unwrap(), CronSpec::default());
    let tagged: TriggerSpec =
        serde_json::from_value(json!({"type": "cron", "day_of_week": "mon-fri", "hour": 9})).unwrap();
    assert_eq!(serde_json::to_value(&tagged).unwrap(), json!({"type": "cron", "day_of_week": "mon-fri", "hour": 9}));
}

#[test]
fn the_schema_shows_fields_as_string_or_integer() {
    let schema = serde_json::to_value(<CronSpec as utoipa::PartialSchema>::schema()).unwrap();
    assert_eq!(schema["properties"]["hour"]["type"], json!(["string", "integer"]), "{schema}");
    let required = schema.get("required").cloned().unwrap_or(json!([]));
    assert_eq!(required, json!([]), "no field is required: {schema}");
}

#[test]
fn matches_reads_the_wall_time_in_the_zone() {
    let trigger = compile(json!({"hour": 9, "timezone": "Europe/Berlin"}));
    assert!(trigger.matches(instant("2026-01-05T08:00:00Z")));
    assert!(!trigger.matches(instant("2026-01-05T09:00:00Z")));
    assert!(trigger.matches(instant("2026-07-05T07:00:00Z")));
}

mod crontab_strings {
    use super::*;

    #[test]
    fn standard_fields_and_sunday_as_0_or_7() {
        assert_eq!(
            fires(json!({"crontab": "*/20 9 * * *"}), NOW, 4),
            [
                "2026-01-01T09:00:00+00:00",
                "2026-01-01T09:20:00+00:00",
                "2026-01-01T09:40:00+00:00",
                "2026-01-02T09:00:00+00:00"
            ]
        );
        // 2026-01-04 is a Sunday.
        assert_eq!(fires(json!({"crontab": "0 0 * * 0"}), NOW, 1), ["2026-01-04T00:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "0 0 * * 7"}), NOW, 1), ["2026-01-04T00:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "0 0 * * sun"}), NOW, 1), ["2026-01-04T00:00:00+00:00"]);
        assert_eq!(
            fires(json!({"crontab": "30 8 * JAN-FEB MON-FRI"}), NOW, 2),
            ["2026-01-01T08:30:00+00:00", "2026-01-02T08:30:00+00:00"]
        );
    }

    #[test]
    fn last_nth_and_nearest_weekday() {
        assert_eq!(
            fires(json!({"crontab": "0 0 L * *"}), NOW, 2),
            ["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00"]
        );
        assert_eq!(
            fires(json!({"crontab": "0 0 * * 5#2"}), NOW, 2),
            ["2026-01-09T00:00:00+00:00", "2026-02-13T00:00:00+00:00"]
        );
        assert_eq!(
            fires(json!({"crontab": "0 0 * * 5L"}), NOW, 2),
            ["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"]
        );
        // 2026-02-01 is a Sunday: 1W is Monday the 2nd. 2026-01-31 is a Saturday: LW is Friday the 30th.
        assert_eq!(fires(json!({"crontab": "0 0 1W * *"}), "2026-02-01T00:00:00Z", 1), ["2026-02-02T00:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "0 0 LW * *"}), NOW, 1), ["2026-01-30T00:00:00+00:00"]);
    }

    #[test]
    fn day_of_month_or_weekday_as_standard_cron_reads_it() {
        // The 13th, or any Friday.
        assert_eq!(
            fires(json!({"crontab": "0 0 13 * 5"}), NOW, 3),
            ["2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00", "2026-01-13T00:00:00+00:00"]
        );
    }

    #[test]
    fn aliases() {
        assert_eq!(fires(json!({"crontab": "@daily"}), "2026-01-01T00:00:01Z", 1), ["2026-01-02T00:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "@hourly"}), "2026-01-01T00:00:01Z", 1), ["2026-01-01T01:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "@weekly"}), NOW, 1), ["2026-01-04T00:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "@Monthly"}), "2026-01-01T00:00:01Z", 1), ["2026-02-01T00:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "@yearly"}), "2026-01-01T00:00:01Z", 1), ["2027-01-01T00:00:00+00:00"]);
        assert_eq!(fires(json!({"crontab": "@annually"}), "2026-01-01T00:00:01Z", 1), ["2027-01-01T00:00:00+00:00"]);
    }

    #[test]
    fn start_end_and_zone_apply() {
        assert_eq!(
            fires(
                json!({"crontab": "0 9 * * *", "timezone": "America/New_York", "start_date": "2026-06-01", "end_date": "2026-06-02 09:00"}),
                NOW,
                5
            ),
            ["2026-06-01T09:00:00-04:00", "2026-06-02T09:00:00-04:00"]
        );
    }

    #[test]
    fn bad_crontabs_name_the_value() {
        for text in [
            "",
            "* * * *",
            "0 0 * * * *",
            "61 * * * *",
            "* * 32 * *",
            "* * * * 8",
            "@reboot",
            "*/0 * * * *",
            "ñ * * * *",
            "0 0 * * MON#9",
        ] {
            let err = error(json!({"crontab": text}));
            assert_eq!(err.field, "crontab", "{text:?}");
            assert!(err.message.contains(&format!("{text:?}")), "{err}");
        }
    }
}

/// The DST rule: a skipped wall time fires once, just after the gap; in a repeated stretch a fixed-time job
/// fires at the first occurrence only, any other job in both passes.
mod dst_rule {
    use super::*;

    fn zoned(mut fields: Value, zone: &str) -> Value {
        fields["timezone"] = json!(zone);
        fields
    }

    #[test]
    fn berlin_gap() {
        let zone = "Europe/Berlin";
        let now = "2026-03-28T12:00:00Z";
        assert_eq!(
            fires(zoned(json!({"hour": 2, "minute": 30}), zone), now, 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
        // Four skipped matches, one fire.
        assert_eq!(
            fires(zoned(json!({"hour": 2, "minute": "*/15"}), zone), now, 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]
        );
        // 03:00 matches itself and stands in for 02:00–02:45: still one fire.
        assert_eq!(
            fires(zoned(json!({"minute": "*/15"}), zone), "2026-03-29T00:40:00Z", 3),
            ["2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]
        );
        assert_eq!(
            fires(zoned(json!({"minute": 5}), zone), "2026-03-29T00:00:00Z", 3),
            ["2026-03-29T01:05:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:05:00+02:00"]
        );
    }

    #[test]
    fn berlin_fold_fixed_time_fires_once() {
        let zone = "Europe/Berlin";
        let job = zoned(json!({"hour": 2, "minute": 30}), zone);
        assert_eq!(
            fires(job.clone(), "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        // From inside the first pass, before and after the match.
        assert_eq!(fires(job.clone(), "2026-10-25T00:10:00Z", 1), ["2026-10-25T02:30:00+02:00"]);
        assert_eq!(fires(job.clone(), "2026-10-25T00:40:00Z", 1), ["2026-10-26T02:30:00+01:00"]);
        // From inside the second pass: the second occurrence is not a fire.
        assert_eq!(fires(job, "2026-10-25T01:10:00Z", 1), ["2026-10-26T02:30:00+01:00"]);
        assert_eq!(
            fires(zoned(json!({"hour": 2}), zone), "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:00:00+02:00", "2026-10-26T02:00:00+01:00"]
        );
    }

    #[test]
    fn berlin_fold_other_jobs_fire_in_both_passes() {
        let zone = "Europe/Berlin";
        let job = zoned(json!({"minute": "*/30"}), zone);
        assert_eq!(
            fires(job.clone(), "2026-10-24T23:00:00Z", 7),
            [
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        // Starting inside the first pass must still reach the second pass, whose wall times lie behind the start's.
        assert_eq!(
            fires(job.clone(), "2026-10-25T00:10:00Z", 3),
            ["2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]
        );
        assert_eq!(
            fires(job.clone(), "2026-10-25T00:45:00Z", 2),
            ["2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]
        );
        assert_eq!(fires(job, "2026-10-25T01:10:00Z", 2), ["2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]);
        assert_eq!(
            fires(zoned(json!({"hour": 2, "minute": "0,30"}), zone), "2026-10-24T12:00:00Z", 5),
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-26T02:00:00+01:00"
            ]
        );
    }

    #[test]
    fn new_york() {
        let zone = "America/New_York";
        assert_eq!(
            fires(zoned(json!({"hour": 2, "minute": 30}), zone), "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
        assert_eq!(
            fires(zoned(json!({"hour": 1, "minute": 30}), zone), "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
        );
        assert_eq!(
            fires(zoned(json!({"hour": 1, "minute": "*/20"}), zone), "2026-10-31T12:00:00Z", 7),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:20:00-04:00",
                "2026-11-01T01:40:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:20:00-05:00",
                "2026-11-01T01:40:00-05:00",
                "2026-11-02T01:00:00-05:00"
            ]
        );
    }

    #[test]
    fn lord_howe_half_hour_shifts() {
        let zone = "Australia/Lord_Howe";
        assert_eq!(
            fires(zoned(json!({"hour": 2, "minute": 15}), zone), "2026-10-03T00:00:00Z", 2),
            ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]
        );
        assert_eq!(
            fires(zoned(json!({"minute": "*/10"}), zone), "2026-10-03T15:00:00Z", 5),
            [
                "2026-10-04T01:30:00+10:30",
                "2026-10-04T01:40:00+10:30",
                "2026-10-04T01:50:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-04T02:40:00+11:00"
            ]
        );
        // 01:30–02:00 repeats on 2026-04-05.
        assert_eq!(
            fires(zoned(json!({"hour": 1, "minute": 45}), zone), "2026-04-04T12:00:00Z", 2),
            ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]
        );
        assert_eq!(
            fires(zoned(json!({"minute": "*/15"}), zone), "2026-04-04T14:00:00Z", 7),
            [
                "2026-04-05T01:00:00+11:00",
                "2026-04-05T01:15:00+11:00",
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T01:30:00+10:30",
                "2026-04-05T01:45:00+10:30",
                "2026-04-05T02:00:00+10:30"
            ]
        );
    }

    #[test]
    fn santiago_transitions_at_midnight() {
        let zone = "America/Santiago";
        // 2026-09-06 begins at 01:00: a midnight job fires then, once.
        assert_eq!(
            fires(zoned(json!({"hour": 0}), zone), "2026-09-05T00:00:00Z", 3),
            ["2026-09-05T00:00:00-04:00", "2026-09-06T01:00:00-03:00", "2026-09-07T00:00:00-03:00"]
        );
        assert_eq!(fires(zoned(json!({"month": 9, "day": 6}), zone), NOW, 1), ["2026-09-06T01:00:00-03:00"]);
        // 23:00–24:00 repeats on 2026-04-04.
        assert_eq!(
            fires(zoned(json!({"hour": 23, "minute": 30}), zone), "2026-04-04T12:00:00Z", 2),
            ["2026-04-04T23:30:00-03:00", "2026-04-05T23:30:00-04:00"]
        );
        assert_eq!(
            fires(zoned(json!({"hour": 23, "minute": "0,30"}), zone), "2026-04-04T12:00:00Z", 5),
            [
                "2026-04-04T23:00:00-03:00",
                "2026-04-04T23:30:00-03:00",
                "2026-04-04T23:00:00-04:00",
                "2026-04-04T23:30:00-04:00",
                "2026-04-05T23:00:00-04:00"
            ]
        );
    }

    #[test]
    fn chatham_quarter_hour_offsets() {
        let zone = "Pacific/Chatham";
        // 02:45–03:45 is skipped on 2026-09-27 and repeated on 2026-04-05.
        assert_eq!(
            fires(zoned(json!({"hour": 3, "minute": 0}), zone), "2026-09-26T00:00:00Z", 2),
            ["2026-09-27T03:45:00+13:45", "2026-09-28T03:00:00+13:45"]
        );
        assert_eq!(
            fires(zoned(json!({"hour": 3, "minute": 0}), zone), "2026-04-04T00:00:00Z", 2),
            ["2026-04-05T03:00:00+13:45", "2026-04-06T03:00:00+12:45"]
        );
        assert_eq!(
            fires(zoned(json!({"hour": 3, "minute": "0,30"}), zone), "2026-04-04T00:00:00Z", 5),
            [
                "2026-04-05T03:00:00+13:45",
                "2026-04-05T03:30:00+13:45",
                "2026-04-05T03:00:00+12:45",
                "2026-04-05T03:30:00+12:45",
                "2026-04-06T03:00:00+12:45"
            ]
        );
    }

    #[test]
    fn crontab_strings_follow_the_same_rule() {
        let zone = "Europe/Berlin";
        assert_eq!(
            fires(json!({"crontab": "30 2 * * *", "timezone": zone}), "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
        // croner alone would skip this day: the gap swallows every match of a non-fixed job.
        assert_eq!(
            fires(json!({"crontab": "*/15 2 * * *", "timezone": zone}), "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]
        );
        assert_eq!(
            fires(json!({"crontab": "30 2 * * *", "timezone": zone}), "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        assert_eq!(
            fires(json!({"crontab": "*/30 2 * * *", "timezone": zone}), "2026-10-25T00:10:00Z", 3),
            ["2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00"]
        );
    }

    #[test]
    fn starting_exactly_at_the_end_of_a_gap_still_fires_for_the_skipped_times() {
        assert_eq!(
            fires(json!({"hour": 2, "minute": 30, "timezone": "America/New_York"}), "2026-03-08T07:00:00Z", 2),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
        );
        assert_eq!(
            fires(json!({"minute": 30, "timezone": "Europe/Berlin"}), "2026-03-29T01:00:00Z", 2),
            ["2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00"]
        );
    }

    #[test]
    fn a_gap_fire_does_not_match_but_stands_in_for_a_skipped_time() {
        let trigger = compile(json!({"hour": 2, "minute": 30, "timezone": "Europe/Berlin"}));
        let fire = trigger.next_fire_time(None, instant("2026-03-28T12:00:00Z")).unwrap();
        assert!(!trigger.matches(fire));
        assert!(dst::is_gap_fire(trigger.timezone, &trigger.schedule, fire));
        assert!(!dst::is_gap_fire(trigger.timezone, &trigger.schedule, instant("2026-03-30T00:30:00Z")));
    }
}

/// Fire times of 600 random expressions as APScheduler 3.11.3 computes them (`testdata/aps_fixtures.py`), away
/// from DST transitions, where both must agree exactly.
#[test]
fn agrees_with_apscheduler() {
    let fixtures: Value = serde_json::from_str(include_str!("testdata/aps_fixtures.json")).unwrap();
    let cases = fixtures["cases"].as_array().unwrap();
    assert!(cases.len() >= 500);
    let mut compared = 0;
    for case in cases {
        let mut fields = case["fields"].clone();
        for key in ["timezone", "start_date", "end_date"] {
            if let Some(value) = case.get(key) {
                fields[key] = value.clone();
            }
        }
        let trigger = spec(fields.clone()).compile(Tz::UTC).unwrap_or_else(|err| panic!("{fields}: {err}"));
        let now = instant(case["now"].as_str().unwrap());
        let expected: Vec<DateTime<Utc>> =
            case["fires"].as_array().unwrap().iter().map(|t| instant(t.as_str().unwrap())).collect();
        let mut actual = Vec::new();
        let mut previous = None;
        while actual.len() < expected.len().max(1) {
            let Some(next) = trigger.next_fire_time(previous, now) else { break };
            actual.push(next);
            previous = Some(next);
        }
        assert_eq!(actual, expected, "{fields} from {now}");
        compared += expected.len();
    }
    assert!(compared > 4000, "compared {compared} fire times");
}
