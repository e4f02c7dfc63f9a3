use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

use super::*;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

fn calendar(value: serde_json::Value) -> Calendar {
    serde_json::from_value(value).unwrap()
}

fn compiled(value: serde_json::Value) -> CompiledCalendar {
    calendar(value).compile_own(Tz::UTC).unwrap_or_else(|err| panic!("{err}"))
}

fn excluded(calendar: &CompiledCalendar, time: &str) -> bool {
    is_excluded(calendar, at(time))
}

fn until(calendar: &CompiledCalendar, time: &str) -> Option<String> {
    calendar.excluded_until(at(time)).map(|end| end.to_rfc3339())
}

#[test]
fn dates_exclude_whole_days_in_the_calendars_zone() {
    let xmas = compiled(json!({"id": "x", "timezone": "America/New_York", "exclude": {"dates": ["2026-12-25"]}}));
    assert!(!excluded(&xmas, "2026-12-25T04:59:59Z"), "still the 24th in New York");
    assert!(excluded(&xmas, "2026-12-25T05:00:00Z"));
    assert!(excluded(&xmas, "2026-12-26T04:59:59Z"));
    assert!(!excluded(&xmas, "2026-12-26T05:00:00Z"));
    assert_eq!(until(&xmas, "2026-12-25T12:00:00Z").as_deref(), Some("2026-12-26T05:00:00+00:00"));
}

#[test]
fn ranges_are_half_open_and_consecutive_exclusions_join_into_one_stretch() {
    let cal = compiled(json!({"id": "x", "timezone": "Europe/Berlin", "exclude": {
        "ranges": [{"start": "2026-12-24T12:00:00", "end": "2026-12-27T00:00:00"}],
        "dates": ["2026-12-27", "2026-12-28"]}}));
    assert!(!excluded(&cal, "2026-12-24T10:59:59Z"));
    assert!(excluded(&cal, "2026-12-24T11:00:00Z"), "12:00 Berlin is the range's start");
    // The range and the two dates touch: one stretch to midnight of the 29th.
    assert_eq!(until(&cal, "2026-12-25T00:00:00Z").as_deref(), Some("2026-12-28T23:00:00+00:00"));
    assert!(!excluded(&cal, "2026-12-28T23:00:00Z"), "the end is not excluded");
    let offset = compiled(
        json!({"id": "x", "exclude": {"ranges": [{"start": "2026-01-01T00:00:00+02:00", "end": "2026-01-01T01:00:00+02:00"}]}}),
    );
    assert!(excluded(&offset, "2025-12-31T22:30:00Z"));
}

#[test]
fn consecutive_dates_merge_into_one_period_so_a_year_is_one_step() {
    let days: Vec<String> = (0..365)
        .map(|day| (chrono::NaiveDate::from_ymd_opt(2027, 1, 1).unwrap() + chrono::Days::new(day)).to_string())
        .collect();
    let year = compiled(json!({"id": "x", "timezone": "Europe/Berlin", "exclude": {"dates": days}}));
    assert_eq!(year.period_count(), 1);
    assert_eq!(until(&year, "2027-06-01T12:00:00Z").as_deref(), Some("2027-12-31T23:00:00+00:00"));
}

#[test]
fn weekdays_are_read_in_the_calendars_zone_and_join_into_a_weekend() {
    let weekend = compiled(json!({"id": "w", "timezone": "Asia/Tokyo", "exclude": {"weekdays": ["sat", "SUN"]}}));
    // 2026-01-03 is a Saturday; it starts at 2026-01-02T15:00Z in Tokyo.
    assert!(!excluded(&weekend, "2026-01-02T14:59:59Z"));
    assert!(excluded(&weekend, "2026-01-02T15:00:00Z"));
    assert_eq!(until(&weekend, "2026-01-03T12:00:00Z").as_deref(), Some("2026-01-04T15:00:00+00:00"));
    let every_day =
        compiled(json!({"id": "a", "exclude": {"weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]}}));
    assert_eq!(every_day.excluded_until(at("2026-01-01T00:00:00Z")), Some(DateTime::<Utc>::MAX_UTC));
}

#[test]
fn a_base_chain_adds_up_each_in_its_own_zone() {
    let calendars = vec![
        calendar(json!({"id": "company", "timezone": "UTC", "exclude": {"dates": ["2026-07-01"]}, "base": "national"})),
        calendar(json!({"id": "national", "timezone": "America/New_York", "exclude": {"dates": ["2026-07-04"]},
                        "base": "weekends"})),
        calendar(json!({"id": "weekends", "timezone": "Asia/Tokyo", "exclude": {"weekdays": ["sun"]}})),
    ];
    let set = CalendarSet::build(7, calendars, Tz::UTC);
    assert_eq!((set.version, set.len()), (7, 3));
    let company = set.calendar("company").unwrap();
    assert!(excluded(&company, "2026-07-01T12:00:00Z"), "its own date");
    assert!(excluded(&company, "2026-07-04T12:00:00Z"), "its base's date");
    assert!(!excluded(&company, "2026-07-04T03:00:00Z"), "still July 3rd in New York");
    // Sunday 2026-07-05 in Tokyo starts at 2026-07-04T15:00Z: it joins the base's July 4th stretch.
    assert_eq!(until(&company, "2026-07-04T12:00:00Z").as_deref(), Some("2026-07-05T15:00:00+00:00"));
    let national = set.calendar("national").unwrap();
    assert!(!excluded(&national, "2026-07-01T12:00:00Z"), "a base does not see what chains it");
}

#[test]
fn a_base_that_is_missing_or_makes_a_cycle_names_base() {
    let stored: HashMap<String, Calendar> = [
        calendar(json!({"id": "a", "base": "b"})),
        calendar(json!({"id": "b", "base": "c"})),
        calendar(json!({"id": "c"})),
        calendar(json!({"id": "d", "base": "gone"})),
    ]
    .into_iter()
    .map(|calendar| (calendar.id.clone(), calendar))
    .collect();
    assert_eq!(check_base(&calendar(json!({"id": "new", "base": "a"})), &stored), Ok(()));
    let err = check_base(&calendar(json!({"id": "c", "base": "a"})), &stored).unwrap_err();
    assert_eq!(err.field, "base");
    assert!(err.message.contains("c → a → b → c"), "{}", err.message);
    let err = check_base(&calendar(json!({"id": "self", "base": "self"})), &stored).unwrap_err();
    assert_eq!((err.field.as_str(), err.message.as_str()), ("base", "makes a cycle: self → self"));
    let err = check_base(&calendar(json!({"id": "x", "base": "nope"})), &stored).unwrap_err();
    assert_eq!((err.field.as_str(), err.message.as_str()), ("base", "no calendar has id \"nope\""));
    let err = check_base(&calendar(json!({"id": "x", "base": "d"})), &stored).unwrap_err();
    assert!(err.message.contains("\"gone\", the base of \"d\""), "{}", err.message);
}

#[test]
fn bad_input_names_the_field_at_fault() {
    let cases = [
        (json!({"id": "x", "timezone": "Mars/Base"}), "timezone"),
        (json!({"id": "x", "exclude": {"dates": ["2026-12-25", "12/26/2026"]}}), "exclude.dates[1]"),
        (
            json!({"id": "x", "exclude": {"ranges": [{"start": "soon", "end": "2026-01-01"}]}}),
            "exclude.ranges[0].start",
        ),
        (
            json!({"id": "x", "exclude": {"ranges": [{"start": "2026-01-02", "end": "2026-01-01"}]}}),
            "exclude.ranges[0].end",
        ),
        (json!({"id": "x", "exclude": {"weekdays": ["sat", "caturday"]}}), "exclude.weekdays[1]"),
        (json!({"id": "x", "ics": "hello"}), "ics"),
        (
            json!({"id": "x", "ics": "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:no start\nEND:VEVENT\nEND:VCALENDAR\n"}),
            "ics",
        ),
    ];
    for (json, field) in cases {
        let err = calendar(json.clone()).compile_own(Tz::UTC).unwrap_err();
        assert_eq!(err.field, field, "{json}: {err}");
    }
    let unknown = serde_json::from_value::<Calendar>(json!({"id": "x", "exclude": {"holidays": []}}));
    assert!(unknown.is_err(), "unknown fields are refused");
}

fn ics(events: &str) -> String {
    format!("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{events}END:VCALENDAR\r\n")
}

#[test]
fn a_yearly_rrule_holiday_is_excluded_every_year() {
    let text = ics("BEGIN:VEVENT\r\nUID:xmas@test\r\nSUMMARY:Christmas\r\nDTSTART;VALUE=DATE:20201225\r\n\
                    DTEND;VALUE=DATE:20201226\r\nRRULE:FREQ=YEARLY\r\nEND:VEVENT\r\n");
    let cal = compiled(json!({"id": "x", "timezone": "Europe/Berlin", "ics": text}));
    for year in [2020, 2026, 2049, 2199] {
        assert!(excluded(&cal, &format!("{year}-12-25T09:00:00+01:00")), "{year}");
        assert!(!excluded(&cal, &format!("{year}-12-26T00:00:00+01:00")), "{year}");
        assert!(!excluded(&cal, &format!("{year}-12-24T23:59:59+01:00")), "{year}");
    }
}

#[test]
fn a_multi_day_timed_event_across_a_dst_change_ends_when_it_says() {
    // Berlin leaves summer time on 2026-10-25: the event runs 47 wall-clock hours but 48 real ones.
    let text = ics("BEGIN:VEVENT\r\nUID:offsite@test\r\nDTSTART;TZID=Europe/Berlin:20261024T120000\r\n\
                    DTEND;TZID=Europe/Berlin:20261026T110000\r\nEND:VEVENT\r\n");
    let cal = compiled(json!({"id": "x", "ics": text}));
    assert!(!excluded(&cal, "2026-10-24T11:59:59+02:00"));
    assert!(excluded(&cal, "2026-10-24T12:00:00+02:00"));
    assert_eq!(until(&cal, "2026-10-25T12:00:00+01:00").as_deref(), Some("2026-10-26T10:00:00+00:00"));
    assert!(excluded(&cal, "2026-10-26T10:59:59+01:00"));
    assert!(!excluded(&cal, "2026-10-26T11:00:00+01:00"));
}

#[test]
fn a_recurring_all_day_event_keeps_midnight_to_midnight_across_a_dst_change() {
    // A three-day event every year from 24 October; in 2026 it spans Berlin's change back to standard time.
    let text = ics("BEGIN:VEVENT\r\nUID:fair@test\r\nDTSTART;VALUE=DATE:20251024\r\nDURATION:P3D\r\n\
                    RRULE:FREQ=YEARLY;COUNT=3\r\nEND:VEVENT\r\n");
    let cal = compiled(json!({"id": "x", "timezone": "Europe/Berlin", "ics": text}));
    assert_eq!(until(&cal, "2026-10-25T12:00:00Z").as_deref(), Some("2026-10-26T23:00:00+00:00"));
    assert!(excluded(&cal, "2026-10-24T00:00:00+02:00"));
    assert!(!excluded(&cal, "2026-10-27T00:00:00+01:00"));
    assert!(!excluded(&cal, "2028-10-25T12:00:00Z"), "COUNT=3 ends after 2027");
}

#[test]
fn exdate_and_recurrence_id_take_occurrences_out_of_a_series() {
    let text = ics("BEGIN:VEVENT\r\nUID:standup@test\r\nDTSTART;TZID=America/New_York:20260105T090000\r\n\
                    DTEND;TZID=America/New_York:20260105T091500\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\n\
                    EXDATE;TZID=America/New_York:20260112T090000,20260119T090000\r\nEND:VEVENT\r\n\
                    BEGIN:VEVENT\r\nUID:standup@test\r\nRECURRENCE-ID;TZID=America/New_York:20260126T090000\r\n\
                    DTSTART;TZID=America/New_York:20260126T100000\r\nDTEND;TZID=America/New_York:20260126T101500\r\n\
                    END:VEVENT\r\n");
    let cal = compiled(json!({"id": "x", "ics": text}));
    assert!(excluded(&cal, "2026-01-05T09:05:00-05:00"));
    assert!(!excluded(&cal, "2026-01-12T09:05:00-05:00"), "EXDATE");
    assert!(!excluded(&cal, "2026-01-19T09:05:00-05:00"), "EXDATE, second value");
    assert!(!excluded(&cal, "2026-01-26T09:05:00-05:00"), "moved by RECURRENCE-ID");
    assert!(excluded(&cal, "2026-01-26T10:05:00-05:00"), "to here");
    assert!(excluded(&cal, "2026-03-09T09:05:00-04:00"), "after New York's DST change, still 09:00 local");
}

#[test]
fn ics_edge_cases() {
    // A floating time is read in the calendar's zone; a timed event without an end excludes its first second;
    // a cancelled event excludes nothing.
    let text = ics("BEGIN:VEVENT\r\nDTSTART:20260601T120000\r\nEND:VEVENT\r\n\
                    BEGIN:VEVENT\r\nSTATUS:CANCELLED\r\nDTSTART;VALUE=DATE:20260602\r\nEND:VEVENT\r\n");
    let cal = compiled(json!({"id": "x", "timezone": "Asia/Kolkata", "ics": text}));
    assert!(excluded(&cal, "2026-06-01T12:00:00+05:30"));
    assert!(!excluded(&cal, "2026-06-01T12:00:01+05:30"));
    assert!(!excluded(&cal, "2026-06-02T12:00:00+05:30"));
    let unknown_zone =
        ics("BEGIN:VEVENT\r\nUID:u1\r\nDTSTART;TZID=Eastern Standard Time:20260601T120000\r\nEND:VEVENT\r\n");
    let err = calendar(json!({"id": "x", "ics": unknown_zone})).compile_own(Tz::UTC).unwrap_err();
    assert_eq!(err.field, "ics");
    assert!(err.message.contains("VEVENT 1 (u1)") && err.message.contains("Eastern Standard Time"), "{}", err.message);
    let endless = ics("BEGIN:VEVENT\r\nDTSTART:20260101T000000Z\r\nRRULE:FREQ=HOURLY\r\nEND:VEVENT\r\n");
    let err = calendar(json!({"id": "x", "ics": endless})).compile_own(Tz::UTC).unwrap_err();
    assert!(err.message.contains("more than"), "{}", err.message);
}

proptest::proptest! {
    /// Whatever text arrives in `ics` (schemathesis sends anything), compiling answers with periods or an error,
    /// never a panic.
    #[test]
    fn any_ics_text_compiles_or_is_refused(
        start in "(DTSTART(;VALUE=DATE|;TZID=Europe/Berlin|;TZID=Nowhere)?:[0-9TZ]{0,16})?",
        end in "((DTEND|DURATION)(;VALUE=DATE)?:[-0-9PTWDHMSZ]{0,16})?",
        rule in "(RRULE:(FREQ=(YEARLY|DAILY|SECONDLY|WEEKLY);?)?(COUNT=[0-9]{1,6};?)?(INTERVAL=[0-9]{1,5};?)?(BYDAY=[-0-9A-Z,]{0,8};?)?(UNTIL=[0-9TZ]{0,16})?)?",
        exdate in "(EXDATE(;VALUE=DATE)?:[0-9TZ,]{0,20})?",
        noise in "\\PC{0,40}",
    ) {
        let text = format!("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n{start}\r\n{end}\r\n{rule}\r\n{exdate}\r\n{noise}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n");
        let calendar = Calendar { id: "x".into(), timezone: None, exclude: Exclude::default(), ics: Some(text), base: None };
        let _ = calendar.compile_own(Tz::UTC);
        let raw = Calendar { ics: Some(noise), ..calendar };
        let _ = raw.compile_own(Tz::UTC);
    }
}

#[test]
fn holiday_feeds_common_rules_work() {
    // Thanksgiving: the fourth Thursday of November; a date-only UNTIL, as feeds write it for all-day events.
    let text = ics("BEGIN:VEVENT\r\nUID:thanksgiving@test\r\nDTSTART;VALUE=DATE:20201126\r\n\
                    RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=4TH;UNTIL=20301231\r\nEND:VEVENT\r\n\
                    BEGIN:VEVENT\r\nUID:memorial@test\r\nDTSTART;VALUE=DATE:20200525\r\n\
                    RRULE:FREQ=YEARLY;BYMONTH=5;BYDAY=-1MO;UNTIL=20301231T000000Z\r\nEND:VEVENT\r\n");
    let cal = compiled(json!({"id": "x", "timezone": "America/New_York", "ics": text}));
    assert!(excluded(&cal, "2026-11-26T12:00:00-05:00"), "Thanksgiving 2026");
    assert!(!excluded(&cal, "2026-11-19T12:00:00-05:00"));
    assert!(excluded(&cal, "2029-11-22T12:00:00-05:00"), "Thanksgiving 2029");
    assert!(!excluded(&cal, "2031-11-27T12:00:00-05:00"), "after UNTIL");
    assert!(excluded(&cal, "2026-05-25T12:00:00-04:00"), "Memorial Day 2026");
}
