//! Wall-clock time in a zone that has DST. docs/triggers.md's rule for fixed-time triggers: a local time that does not
//! exist (spring forward) fires once, at the first instant after the gap; a repeated local time (fall back) fires
//! at its first occurrence.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The longest a zone's clock has ever jumped in one transition is 24 hours (Samoa, 2011); searching a wider
/// window around a gap keeps the binary search correct for every zone in the tz database.
const MAX_TRANSITION_SECONDS: i64 = 26 * 3600;

/// The wall-clock time of an instant in `tz`.
pub fn wall_time(tz: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&tz).naive_local()
}

/// The UTC offset of `tz` at an instant, in seconds.
pub fn offset_seconds(tz: Tz, instant: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&instant.naive_utc()).fix().local_minus_utc()
}

/// How a local time maps to instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// The usual case: exactly one instant.
    Single(DateTime<Utc>),
    /// A repeated local time: its first and its second occurrence.
    Repeated(DateTime<Utc>, DateTime<Utc>),
    /// A local time skipped by a forward jump; the instant is the first one after the gap.
    Skipped(DateTime<Utc>),
}

/// Map a local time in `tz` to instants.
pub fn resolve(tz: Tz, local: NaiveDateTime) -> Local {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Local::Single(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            Local::Repeated(a.min(b), a.max(b))
        }
        LocalResult::None => Local::Skipped(first_instant_at_or_after(tz, local)),
    }
}

/// The fixed-time rule: the first occurrence of a repeated time, the end of a gap for a skipped one.
pub fn resolve_earliest(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match resolve(tz, local) {
        Local::Single(t) | Local::Repeated(t, _) | Local::Skipped(t) => t,
    }
}

/// The first instant whose wall time is at or after `local`. Wall time only moves forward around a gap, so a
/// binary search over a window wider than any transition finds it.
fn first_instant_at_or_after(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let as_utc = local.and_utc();
    let mut low = as_utc - Duration::seconds(MAX_TRANSITION_SECONDS);
    let mut high = as_utc + Duration::seconds(MAX_TRANSITION_SECONDS);
    // Invariant: wall(low) < local <= wall(high), at one-second resolution.
    while high - low > Duration::seconds(1) {
        let middle = low + (high - low) / 2;
        if wall_time(tz, middle) >= local {
            high = middle;
        } else {
            low = middle;
        }
    }
    // Transitions fall on whole seconds; drop sub-second noise from the search.
    DateTime::from_timestamp(high.timestamp(), 0).unwrap_or(high)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap()
    }

    #[test]
    fn a_skipped_time_resolves_to_the_end_of_the_gap() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = resolve_earliest(berlin, local(2026, 3, 29, 2, 30));
        assert_eq!(t.to_rfc3339(), "2026-03-29T01:00:00+00:00");
        assert_eq!(resolve(berlin, local(2026, 3, 29, 2, 30)), Local::Skipped(t));
    }

    #[test]
    fn a_repeated_time_has_two_occurrences_in_order() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        match resolve(berlin, local(2026, 10, 25, 2, 30)) {
            Local::Repeated(first, second) => {
                assert_eq!(first.to_rfc3339(), "2026-10-25T00:30:00+00:00");
                assert_eq!(second.to_rfc3339(), "2026-10-25T01:30:00+00:00");
            }
            other => panic!("expected a repeated time, got {other:?}"),
        }
    }

    #[test]
    fn lord_howe_half_hour_gap() {
        let lord_howe: Tz = "Australia/Lord_Howe".parse().unwrap();
        // 2026-10-04 02:00 local jumps to 02:30 (+10:30 -> +11:00).
        let t = resolve_earliest(lord_howe, local(2026, 10, 4, 2, 15));
        assert_eq!(wall_time(lord_howe, t), local(2026, 10, 4, 2, 30));
    }
}
