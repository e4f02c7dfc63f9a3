//! docs/triggers.md's rule, applied to the matching wall times a `Schedule` yields: a matching wall time skipped by a
//! forward jump fires once, at the first instant after the gap; in a repeated stretch (fall back) a fixed-time job
//! fires at the first occurrence only, any other job at both occurrences, in absolute time order.
//!
//! Wall time runs backwards once per fold, so "the next matching wall time at or after wall(start)" is not enough
//! when `start` lies in the first pass of a fold: the second pass begins at a wall time *before* wall(start).

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use chrono_tz::Tz;

use super::schedule::Schedule;
use crate::trigger::wall::{self, Local, offset_seconds, wall_time};

/// Matching wall times the walk may pass over before giving up. Only zones with two transitions a few hours apart
/// make it pass over any (a fixed-time job in a second pass passes over one), so this bound is never reached by a
/// real schedule; it keeps a broken zone from looping.
const MAX_PASSED_MATCHES: usize = 1000;

const ONE_SECOND: Duration = Duration::seconds(1);

/// The stretch within which the tz database never has two transitions (they are months apart); see
/// `next_fire_in_steady_offset`.
const TRANSITION_FREE_SECONDS: i64 = 3600;

/// The first fire time at or after `start` (a whole second).
pub fn first_fire_at_or_after(tz: Tz, schedule: &Schedule, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !schedule.is_fixed_time()
        && let Some(fire) = next_fire_in_steady_offset(tz, schedule, start)
    {
        return Some(fire);
    }
    let start_wall = wall_time(tz, start);
    if !schedule.is_fixed_time()
        && let Local::Repeated(first, second) = wall::resolve(tz, start_wall)
        && first == start
    {
        return first_fire_from_first_pass(tz, schedule, start, start_wall, first, second);
    }
    // When `start` is the first instant after a gap, the skipped wall times lie behind wall(start) yet fire at
    // `start` itself, so the walk begins where the second before `start` left off.
    let resumed_wall = wall_time(tz, start - ONE_SECOND) + ONE_SECOND;
    walk(tz, schedule, start_wall.min(resumed_wall), start)
}

/// The common case, with two UTC-offset lookups only: when the offset one second before `start` and at the next
/// match under that offset, less than an hour later, are the same, no transition lies between them (the tz database
/// never has two within an hour), so the match is plain wall time. For a job that is not fixed-time that is its
/// fire time even inside a fold: the occurrence at the offset `start` has is the one due next. Anything else (a gap
/// or fold ahead, a start just after a gap) takes the full path.
fn next_fire_in_steady_offset(tz: Tz, schedule: &Schedule, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Plain seconds rather than chrono's checked date arithmetic: this runs on every call, and the conversions were
    // most of its cost.
    let start_seconds = start.timestamp();
    let offset = offset_seconds(tz, DateTime::from_timestamp(start_seconds - 1, 0)?);
    let start_wall = DateTime::from_timestamp(start_seconds + i64::from(offset), 0)?.naive_utc();
    let fire_seconds = schedule.next_match(start_wall)?.and_utc().timestamp() - i64::from(offset);
    if fire_seconds - start_seconds >= TRANSITION_FREE_SECONDS - 1 {
        return None;
    }
    let fire = DateTime::from_timestamp(fire_seconds, 0)?;
    (offset_seconds(tz, fire) == offset).then_some(fire)
}

/// `start` is the first occurrence of a repeated wall time and the job fires in both passes: the rest of the first
/// pass comes first, then the whole second pass, then whatever follows the fold.
fn first_fire_from_first_pass(
    tz: Tz,
    schedule: &Schedule,
    start: DateTime<Utc>,
    start_wall: NaiveDateTime,
    first: DateTime<Utc>,
    second: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (fold_start, fold_end) = fold_walls(tz, first, second);
    if let Some(wall) = schedule.next_match(start_wall).filter(|wall| *wall < fold_end) {
        return Some(occurrence(tz, wall, Pass::First));
    }
    if let Some(wall) = schedule.next_match(fold_start).filter(|wall| *wall < fold_end) {
        return Some(occurrence(tz, wall, Pass::Second));
    }
    walk(tz, schedule, fold_end, start)
}

/// Matching wall times from `from` on, each mapped by the rule, until one falls at or after `start`. Outside a fold's
/// first pass wall time only moves forward, so the first match is almost always the answer.
fn walk(tz: Tz, schedule: &Schedule, mut from: NaiveDateTime, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let fires_twice_in_folds = !schedule.is_fixed_time();
    for _ in 0..MAX_PASSED_MATCHES {
        let wall = schedule.next_match(from)?;
        let fire = match wall::resolve(tz, wall) {
            Local::Single(instant) | Local::Skipped(instant) => Some(instant),
            Local::Repeated(first, _) if first >= start => Some(first),
            Local::Repeated(_, second) if fires_twice_in_folds => Some(second),
            Local::Repeated(..) => None,
        };
        if let Some(fire) = fire.filter(|fire| *fire >= start) {
            return Some(fire);
        }
        from = wall.checked_add_signed(ONE_SECOND)?;
    }
    None
}

#[derive(Clone, Copy)]
enum Pass {
    First,
    Second,
}

fn occurrence(tz: Tz, wall: NaiveDateTime, pass: Pass) -> DateTime<Utc> {
    match (wall::resolve(tz, wall), pass) {
        (Local::Repeated(first, _), Pass::First) => first,
        (Local::Repeated(_, second), Pass::Second) => second,
        (Local::Single(instant) | Local::Skipped(instant), _) => instant,
    }
}

/// The repeated wall-clock stretch `[fold_start, fold_end)` that `first` and `second` (two occurrences of one wall
/// time) lie in. The transition is the first instant after `first` with another offset; a binary search between
/// the two occurrences finds it.
fn fold_walls(tz: Tz, first: DateTime<Utc>, second: DateTime<Utc>) -> (NaiveDateTime, NaiveDateTime) {
    let offset_before = offset_seconds(tz, first);
    let at = |seconds: i64| DateTime::from_timestamp(seconds, 0).unwrap_or(first);
    // Whole seconds: transitions fall on them, and a half-second bound would let 03:00 pass for "before 03:00".
    let (mut low, mut high) = (first.timestamp(), second.timestamp());
    // Invariant: offset(low) is the old offset, offset(high) the new one.
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if offset_seconds(tz, at(middle)) == offset_before {
            low = middle;
        } else {
            high = middle;
        }
    }
    (wall_time(tz, at(high)), wall_time(tz, at(low)) + ONE_SECOND)
}

/// Whether `instant` is the first instant after a forward jump that skipped a matching wall time: the one kind of
/// fire time whose own wall time need not match.
#[cfg(test)]
pub fn is_gap_fire(tz: Tz, schedule: &Schedule, instant: DateTime<Utc>) -> bool {
    let before = instant - ONE_SECOND;
    let (wall_before, wall_after) = (wall_time(tz, before), wall_time(tz, instant));
    wall_after - wall_before > ONE_SECOND
        && schedule.next_match(wall_before + ONE_SECOND).is_some_and(|wall| wall < wall_after)
}
