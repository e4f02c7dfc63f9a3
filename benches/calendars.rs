//! Fire times with `exclude_calendars`: a preview of 10 of a daily trigger against calendars that exclude a whole
//! year, as a range, as 365 dates and as a yearly iCalendar event lasting a year. Excluded stretches are skipped
//! whole (the trigger is asked for its first fire after the stretch), so each preview costs about what one
//! without calendars costs — microseconds — where testing every fire time of the year would cost 365 of them.
//! Run with `cargo bench --bench calendars`.

use std::hint::black_box;

use apsched::calendar::{Calendar, CalendarSet};
use apsched::trigger::{self, Trigger, TriggerSpec};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// Two fires before the excluded year, the rest after it.
const NOW: &str = "2026-12-30T00:00:00Z";
const PREVIEW: usize = 10;

fn compiled(calendar: serde_json::Value) -> Trigger {
    let calendar: Calendar = serde_json::from_value(calendar).expect("a calendar");
    let set = CalendarSet::build(1, vec![calendar], Tz::UTC);
    let spec: TriggerSpec = serde_json::from_value(
        json!({"type": "cron", "hour": 9, "timezone": "Europe/Berlin", "exclude_calendars": ["closed"]}),
    )
    .expect("a trigger");
    spec.compile_with(Tz::UTC, &set).expect("a valid trigger")
}

fn preview_of_ten(c: &mut Criterion, name: &str, trigger: &Trigger) {
    let now: DateTime<Utc> = NOW.parse().expect("an RFC 3339 instant");
    let times = trigger::preview(trigger, now, PREVIEW);
    assert_eq!(times.len(), PREVIEW);
    assert_eq!(times[2].to_rfc3339(), "2028-01-01T08:00:00+00:00", "{name}: the excluded year is skipped");
    c.bench_function(name, |b| b.iter(|| black_box(trigger::preview(black_box(trigger), now, PREVIEW))));
}

fn benches(c: &mut Criterion) {
    let days: Vec<String> = (0..365)
        .map(|day| {
            let date = NaiveDate::from_ymd_opt(2027, 1, 1).expect("a date") + chrono::Days::new(day);
            date.format("%Y-%m-%d").to_string()
        })
        .collect();
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\nUID:year@bench\r\n\
               DTSTART;VALUE=DATE:20270101\r\nDTEND;VALUE=DATE:20280101\r\nRRULE:FREQ=YEARLY;INTERVAL=3\r\n\
               END:VEVENT\r\nEND:VCALENDAR\r\n";
    let cases = [
        (
            "calendar_year_excluded_as_a_range",
            json!({"exclude": {"ranges": [{"start": "2027-01-01", "end": "2028-01-01"}]}}),
        ),
        ("calendar_year_excluded_as_365_dates", json!({"exclude": {"dates": days}})),
        ("calendar_year_excluded_as_an_ics_event", json!({"ics": ics})),
    ];
    for (name, mut calendar) in cases {
        calendar["id"] = "closed".into();
        calendar["timezone"] = "Europe/Berlin".into();
        preview_of_ten(c, name, &compiled(calendar));
    }
    let plain: TriggerSpec =
        serde_json::from_value(json!({"type": "cron", "hour": 9, "timezone": "Europe/Berlin"})).expect("a trigger");
    let plain = plain.compile(Tz::UTC).expect("a valid trigger");
    let now: DateTime<Utc> = NOW.parse().expect("an RFC 3339 instant");
    c.bench_function("calendar_none_for_comparison", |b| {
        b.iter(|| black_box(trigger::preview(black_box(&plain), now, PREVIEW)))
    });
}

criterion_group!(calendars, benches);
criterion_main!(calendars);
