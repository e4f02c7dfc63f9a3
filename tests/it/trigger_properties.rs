//! Properties every trigger keeps, over random date, interval, calendarinterval, and and or triggers in zones with
//! unusual DST (half-hour shifts, midnight transitions, +12:45 offsets): previews strictly increase and stay within
//! start and end; an `or` fires only at some child's fire times and misses none; an `and` fires only where every
//! child fires. Separately, arbitrary (mostly invalid) specs never panic.

use apsched::trigger::{Trigger, TriggerSpec, preview, wall};
use chrono::{DateTime, Datelike, Days, TimeDelta, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use serde_json::{Value, json};

const ZONES: [&str; 7] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
];
/// Fire times per preview: enough to cross a transition with daily schedules, cheap enough for many cases.
const PREVIEW_COUNT: usize = 25;
/// `now` is drawn from 2024–2028, where the zones above change offset several times.
const FIRST_NOW: i64 = 1_704_067_200;
const NOW_SPAN_SECONDS: i64 = 5 * 365 * 86_400;

fn zone() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&ZONES[..])
}

fn instant(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("in range")
}

/// An instant near `now`, written in `zone`: RFC 3339 half the time, naive (read in the zone) otherwise.
fn written(zone: &str, seconds: i64, naive: bool) -> String {
    let tz: Tz = zone.parse().expect("known zone");
    let local = instant(seconds).with_timezone(&tz);
    if naive { local.naive_local().format("%Y-%m-%d %H:%M:%S").to_string() } else { local.to_rfc3339() }
}

fn date_spec(now: i64) -> impl Strategy<Value = Value> {
    (zone(), -40 * 86_400..60 * 86_400i64, any::<bool>()).prop_map(move |(zone, offset, naive)| {
        json!({"type": "date", "run_date": written(zone, now + offset, naive), "timezone": zone})
    })
}

fn interval_spec(now: i64) -> impl Strategy<Value = Value> {
    let units = (0..3u32, 0..4u32, 0..30u32, 0..120u32, 0..200u32)
        .prop_filter("an interval > 0", |(w, d, h, m, s)| w + d + h + m + s > 0);
    let bounds = (proptest::option::of(-200 * 86_400..5 * 86_400i64), proptest::option::of(0..120 * 86_400i64));
    (zone(), units, bounds, any::<bool>()).prop_map(move |(zone, (w, d, h, m, s), (start, end), naive)| {
        let mut spec = json!({"type": "interval", "weeks": w, "days": d, "hours": h, "minutes": m, "seconds": s,
                              "timezone": zone});
        if let Some(start) = start {
            spec["start_date"] = json!(written(zone, now + start, naive));
            if let Some(end) = end {
                spec["end_date"] = json!(written(zone, now + start + end, false));
            }
        }
        spec
    })
}

fn calendar_spec(now: i64) -> impl Strategy<Value = Value> {
    let units = (0..2i64, 0..14i64, 0..3i64, 0..8i64).prop_filter("at least a day", |(y, m, w, d)| y + m + w + d > 0);
    // Hours around midnight and 01:00–03:00 meet the transitions of the zones above.
    let time = (prop::sample::select(vec![0i64, 1, 2, 3, 23, 9, 12]), 0..60i64, 0..60i64);
    let dates = (-400..30i64, prop::sample::select(vec![None, Some(28u32), Some(29), Some(30), Some(31)]));
    let end = proptest::option::of(0..800u64);
    (zone(), units, time, dates, end).prop_map(
        move |(zone, (years, months, weeks, days), (hour, minute, second), (start_offset, day), end)| {
            let tz: Tz = zone.parse().expect("known zone");
            let today = wall::wall_time(tz, instant(now)).date();
            let mut start = today.checked_add_signed(TimeDelta::days(start_offset)).expect("in range");
            if let Some(day) = day {
                start = start.with_day(day).unwrap_or(start);
            }
            let mut spec = json!({"type": "calendarinterval", "years": years, "months": months, "weeks": weeks,
                                  "days": days, "hour": hour, "minute": minute, "second": second,
                                  "start_date": start.to_string(), "timezone": zone});
            if let Some(end) = end {
                spec["end_date"] = json!((start + Days::new(end)).to_string());
            }
            spec
        },
    )
}

fn leaf_spec(now: i64) -> impl Strategy<Value = Value> {
    prop_oneof![date_spec(now), interval_spec(now), calendar_spec(now)]
}

/// and/or over leaves, sometimes nested once; children sometimes inherit the combination's zone.
fn combination_spec(now: i64) -> impl Strategy<Value = Value> {
    let child = prop_oneof![
        4 => leaf_spec(now),
        1 => (prop::bool::ANY, prop::collection::vec(leaf_spec(now), 1..3)).prop_map(|(and, triggers)| {
            json!({"type": if and { "and" } else { "or" }, "triggers": triggers})
        }),
    ];
    (any::<bool>(), prop::collection::vec(child, 1..4), proptest::option::of(zone()), any::<bool>()).prop_map(
        |(and, mut triggers, zone, inherit)| {
            if inherit && zone.is_some() {
                for child in &mut triggers {
                    if let Some(fields) = child.as_object_mut()
                        && fields.get("type").and_then(Value::as_str) != Some("date")
                    {
                        fields.remove("timezone");
                    }
                }
            }
            let mut spec = json!({"type": if and { "and" } else { "or" }, "triggers": triggers});
            if let Some(zone) = zone {
                spec["timezone"] = json!(zone);
            }
            spec
        },
    )
}

/// An `and` whose children share a wall-clock time and start, so that it has shared times to find: calendar
/// grids of different day counts, and day-multiple intervals from the first fire (which drift across DST).
fn aligned_and_spec(now: i64) -> impl Strategy<Value = Value> {
    let child = prop_oneof![(1..10u32).prop_map(|days| (true, days)), (1..5u32).prop_map(|days| (false, days))];
    (zone(), prop::sample::select(vec![0u32, 1, 2, 3, 9, 23]), 0..60u32, -60..5i64, prop::collection::vec(child, 2..4))
        .prop_map(move |(zone, hour, minute, start_offset, children)| {
            let tz: Tz = zone.parse().expect("known zone");
            let start = wall::wall_time(tz, instant(now)).date() + TimeDelta::days(start_offset);
            let first = wall::resolve_earliest(tz, start.and_hms_opt(hour, minute, 0).expect("valid time"));
            let triggers: Vec<Value> = children
                .into_iter()
                .map(|(calendar, days)| {
                    if calendar {
                        json!({"type": "calendarinterval", "days": days, "hour": hour, "minute": minute,
                               "start_date": start.to_string()})
                    } else {
                        json!({"type": "interval", "hours": 24 * days, "start_date": first.to_rfc3339()})
                    }
                })
                .collect();
            json!({"type": "and", "timezone": zone, "triggers": triggers})
        })
}

fn compile(spec: &Value, now: DateTime<Utc>) -> (TriggerSpec, Trigger) {
    let parsed: TriggerSpec = serde_json::from_value(spec.clone()).expect("generated specs deserialize");
    let resolved = parsed.resolve(Tz::UTC, now).expect("generated specs resolve");
    let trigger = resolved.compile(Tz::UTC).unwrap_or_else(|err| panic!("{spec}: {err}"));
    (resolved, trigger)
}

/// A trigger's first fire time at or after `t` on its own schedule (what an and/or asks of a child).
fn first_at_or_after(trigger: &Trigger, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match trigger {
        Trigger::Date(date) => (date.run_date >= t).then_some(date.run_date),
        Trigger::And(_) | Trigger::Or(_) => trigger.next_fire_time(Some(t - TimeDelta::nanoseconds(1)), t),
        other => other.next_fire_time(None, t),
    }
}

fn is_fire_time(trigger: &Trigger, t: DateTime<Utc>) -> bool {
    first_at_or_after(trigger, t) == Some(t)
}

fn assert_increasing(times: &[DateTime<Utc>]) -> Result<(), TestCaseError> {
    for pair in times.windows(2) {
        prop_assert!(pair[0] < pair[1], "not increasing: {} then {}", pair[0], pair[1]);
    }
    Ok(())
}

/// Fire times lie within the trigger's bounds: an interval's between start and end; a calendarinterval's at its
/// wall-clock time (or, for a time in a gap, the gap's end) on a date from start_date to end_date.
fn assert_within_bounds(trigger: &Trigger, now: DateTime<Utc>, times: &[DateTime<Utc>]) -> Result<(), TestCaseError> {
    match trigger {
        Trigger::Interval(interval) => {
            for &t in times {
                prop_assert!(t >= interval.start_date && t >= now, "{t} before start or now");
                prop_assert!(interval.end_date.is_none_or(|end| t <= end), "{t} after end_date");
            }
        }
        Trigger::CalendarInterval(calendar) => {
            let tz = calendar.timezone;
            for &t in times {
                prop_assert!(t >= now, "{t} before now");
                let local_date = wall::wall_time(tz, t).date();
                // A gap's end can fall on the next day: the nominal date is the fire's local date or the one before.
                let nominal = [Some(local_date), local_date.pred_opt()]
                    .into_iter()
                    .flatten()
                    .find(|date| wall::resolve_earliest(tz, date.and_time(calendar.time)) == t);
                prop_assert!(nominal.is_some(), "{t} is not at {} on any date", calendar.time);
                let nominal = nominal.expect("checked above");
                prop_assert!(nominal >= calendar.start_date, "{t} before start_date");
                prop_assert!(calendar.end_date.is_none_or(|end| nominal <= end), "{t} after end_date");
            }
        }
        Trigger::Date(date) => prop_assert!(times.len() == 1 && times[0] == date.run_date),
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn leaf_previews_increase_and_stay_within_bounds(
        (now, spec) in (FIRST_NOW..FIRST_NOW + NOW_SPAN_SECONDS).prop_flat_map(|now| (Just(now), leaf_spec(now)))
    ) {
        let now = instant(now);
        let (_, trigger) = compile(&spec, now);
        let times = preview(&trigger, now, PREVIEW_COUNT);
        assert_increasing(&times)?;
        assert_within_bounds(&trigger, now, &times)?;
    }

    #[test]
    fn resolving_is_idempotent(
        (now, spec) in (FIRST_NOW..FIRST_NOW + NOW_SPAN_SECONDS).prop_flat_map(|now| {
            (Just(now), prop_oneof![leaf_spec(now), combination_spec(now)])
        }),
        later in 1..10_000_000i64,
    ) {
        let now = instant(now);
        let (resolved, _) = compile(&spec, now);
        let again = resolved.clone().resolve(Tz::UTC, now + TimeDelta::seconds(later)).expect("resolves again");
        prop_assert_eq!(again, resolved);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn combinations_fire_at_their_childrens_times(
        (now, spec) in (FIRST_NOW..FIRST_NOW + NOW_SPAN_SECONDS).prop_flat_map(|now| {
            (Just(now), prop_oneof![2 => combination_spec(now), 1 => aligned_and_spec(now)])
        })
    ) {
        let now = instant(now);
        let (_, trigger) = compile(&spec, now);
        let times = preview(&trigger, now, PREVIEW_COUNT);
        assert_increasing(&times)?;
        match &trigger {
            Trigger::Or(or) => {
                for &t in &times {
                    prop_assert!(or.triggers.iter().any(|child| is_fire_time(child, t)), "{t} is no child's fire time");
                }
                // Between two fires of an `or`, no child fires.
                for pair in times.windows(2) {
                    for child in &or.triggers {
                        let next = first_at_or_after(child, pair[0] + TimeDelta::nanoseconds(1));
                        prop_assert!(next.is_none_or(|next| next >= pair[1]), "a child fires at {next:?}, skipped");
                    }
                }
            }
            Trigger::And(and) => {
                for &t in &times {
                    for child in &and.triggers {
                        prop_assert!(is_fire_time(child, t), "{t} is not a fire time of every child");
                    }
                }
            }
            other => prop_assert!(false, "compiled to {other:?}"),
        }
    }
}

/// JSON numbers and strings that break naive code: extremes, signs, fractions, malformed times and zones.
fn wild_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1),
            json!(23),
            json!(24),
            json!(59),
            json!(60),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e300),
            json!(-1e300),
            json!(0.5),
            json!(1e-9),
            json!(-0.0),
            json!(null),
            json!("2026-02-29"),
            json!("2024-02-29"),
            json!("0001-01-01"),
            json!("9999-12-31T23:59:59Z"),
            json!("2026-03-29 02:30:00"),
            json!("2026-10-25T02:30:00"),
            json!("+275760-09-13T00:00:00Z"),
            json!("not a date"),
            json!(""),
            json!("Europe/Berlin"),
            json!("Mars/Olympus"),
            json!([]),
            json!({}),
        ]),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[0-9:T +-]{0,25}".prop_map(|s| json!(s)),
    ]
}

fn wild_spec() -> impl Strategy<Value = Value> {
    let fields = prop::sample::subsequence(
        vec![
            "run_date",
            "weeks",
            "days",
            "hours",
            "minutes",
            "seconds",
            "years",
            "months",
            "hour",
            "minute",
            "second",
            "start_date",
            "end_date",
            "timezone",
            "jitter",
        ],
        0..6,
    );
    let leaf = (prop::sample::select(vec!["date", "interval", "calendarinterval"]), fields)
        .prop_flat_map(|(kind, fields)| {
            let values = prop::collection::vec(wild_value(), fields.len());
            (Just(kind), Just(fields), values)
        })
        .prop_map(|(kind, fields, values)| {
            let mut spec = json!({"type": kind});
            for (field, value) in fields.into_iter().zip(values) {
                spec[field] = value;
            }
            spec
        });
    leaf.prop_recursive(2, 8, 3, |inner| {
        (prop::bool::ANY, prop::collection::vec(inner, 0..3))
            .prop_map(|(and, triggers)| json!({"type": if and { "and" } else { "or" }, "triggers": triggers}))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn no_input_panics(spec in wild_spec(), now in -62_000_000_000i64..250_000_000_000i64) {
        let now = instant(now);
        // Anything may be rejected; nothing may panic, and whatever compiles previews in increasing order.
        if let Ok(parsed) = serde_json::from_value::<TriggerSpec>(spec)
            && let Ok(resolved) = parsed.resolve(Tz::UTC, now)
            && let Ok(trigger) = resolved.compile(Tz::UTC)
        {
            assert_increasing(&preview(&trigger, now, 5))?;
        }
    }
}
