#!/usr/bin/env python3
"""Differential test of apsched's triggers against APScheduler 3.11.3.

Generates random trigger configurations from a seed, asks `apsched preview` for their fire times and compares them
with APScheduler's own `get_next_fire_time(previous, now)`, chained. Where the two differ, apsched must instead
follow docs/triggers.md's rule at a DST transition (a missing wall-clock time fires once at the first instant after the
gap; in a repeated hour a fixed-time job fires once at the first occurrence, others in both): for that the script
builds a second reference that enumerates the matching wall-clock times with APScheduler in UTC (where no time is
missing or repeated) and maps each to instants by that rule. A case counts as
  - "exact"    when apsched equals APScheduler,
  - "DST rule" when it equals the DST-rule reference and every difference from APScheduler lies at a transition,
  - a failure  otherwise (printed with everything needed to reproduce it; the exit status is 1).

Deliberate differences from APScheduler, modelled in the references (see docs/triggers.md):
  - calendarinterval's first fire is the first at or after `now` (APScheduler returns start_date even when past);
  - an interval or calendarinterval without start_date gets it from apsched's `--now` (APScheduler uses the real
    clock), so the APScheduler side is given the same start explicitly;
  - and/or: each child keeps its own schedule (APScheduler passes the combination's previous fire time to every
    child and its AndTrigger hangs when children disagree), so their reference is computed here from the
    children's APScheduler fire times, with the same 10 000-round limit for `and`;
  - cron's 3.11.3 `get_next_fire_time` only advances when `now` is at or after the previous fire time, so its chain
    is taken with `now` = previous + 1 µs, as a running scheduler calls it;
  - crontab strings use day-of-week names only (APScheduler 3 reads 0 as Monday, apsched as Sunday), and never
    restrict both day of month and day of week (standard cron would OR them).

Usage: differential.py --apsched PATH [--cases N] [--seed S] [--kinds date,interval,...] [--count N] [--verbose]
The script runs itself inside a virtualenv with apscheduler==3.11.3 and tzdata, created on first use at
$APSCHED_DIFF_VENV (default ~/.cache/apsched-diff-venv).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

APSCHEDULER_VERSION = "3.11.3"
IN_VENV_MARKER = "APSCHED_DIFF_IN_VENV"

LEAF_KINDS = ["date", "interval", "calendarinterval", "cron", "crontab"]
COMBINING_KINDS = ["or", "and"]
ALL_KINDS = LEAF_KINDS + COMBINING_KINDS
CRON_KINDS = {"cron", "crontab"}

# docs/triggers.md: an `and` that finds no shared time within this many rounds ends.
MAX_AND_STEPS = 10_000
# Generated schedules live in these years; transitions are tabulated for them.
FIRST_YEAR, LAST_YEAR = 2023, 2032
# apsched's calendarinterval grid ends with this year, the last a Python date can hold.
LAST_CALENDAR_YEAR = 9999
# chrono-tz 0.10 (apsched) tabulates DST transitions up to 2099 and keeps the last offset after; Python's
# zoneinfo follows the zone's rule forever. Fire times from 2100 on are left out of the comparison.
TZ_DATA_HORIZON = datetime(2100, 1, 1, tzinfo=timezone.utc)
# Around an instant with no transition this close, wall-clock times map one to one to instants.
REGULAR_SPAN = timedelta(hours=30)
# A difference from APScheduler is attributed to a DST transition when it lies this close to one (a gap or fold
# is at most an hour long in the zones used, and APScheduler's cron moves a missing time by the gap's length).
DST_WINDOW = timedelta(hours=3)
# The slowest APScheduler reference (an `and` that never agrees) takes a few seconds; a hung apsched does not.
APSCHED_TIMEOUT_SECONDS = 30
ONE_MICROSECOND = timedelta(microseconds=1)

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
]
DST_ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Pacific/Chatham"]
UTC = timezone.utc


def ensure_venv() -> None:
    """Re-run this script inside the virtualenv that holds APScheduler, creating it first if needed."""
    try:
        import apscheduler  # noqa: F401

        if apscheduler.__version__ == APSCHEDULER_VERSION:
            return
    except ImportError:
        pass
    if os.environ.get(IN_VENV_MARKER):
        sys.exit(f"the virtualenv at {sys.prefix} does not provide apscheduler=={APSCHEDULER_VERSION}")
    venv = Path(os.environ.get("APSCHED_DIFF_VENV", Path.home() / ".cache" / "apsched-diff-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating virtualenv {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = f"import apscheduler, tzdata; assert apscheduler.__version__ == {APSCHEDULER_VERSION!r}"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"apscheduler=={APSCHEDULER_VERSION}", "tzdata"],
            check=True,
        )
    os.execve(str(python), [str(python), __file__, *sys.argv[1:]], {**os.environ, IN_VENV_MARKER: "1"})


ensure_venv()

from zoneinfo import ZoneInfo  # noqa: E402

from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger  # noqa: E402
from apscheduler.triggers.cron import CronTrigger  # noqa: E402
from apscheduler.triggers.interval import IntervalTrigger  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Zones: transitions and docs/triggers.md's mapping of a wall-clock time to instants


class Zone:
    def __init__(self, name: str):
        self.name = name
        self.tz = ZoneInfo(name)
        self.transitions = self._find_transitions()
        offsets = {self.offset(t) for t in self.transitions} | {
            self.offset(datetime(FIRST_YEAR, 1, 1, tzinfo=UTC))
        }
        offsets |= {self.offset(t - timedelta(seconds=1)) for t in self.transitions}
        self.min_offset, self.max_offset = min(offsets), max(offsets)

    def offset(self, instant: datetime) -> timedelta:
        return instant.astimezone(self.tz).utcoffset()

    def _find_transitions(self) -> list[datetime]:
        found = []
        step = timedelta(hours=6)
        t = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
        end = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)
        while t < end:
            if self.offset(t) != self.offset(t + step):
                low, high = int(t.timestamp()), int((t + step).timestamp())
                while high - low > 1:
                    middle = (low + high) // 2
                    if self.offset(datetime.fromtimestamp(middle, UTC)) == self.offset(t):
                        low = middle
                    else:
                        high = middle
                found.append(datetime.fromtimestamp(high, UTC))
            t += step
        return found

    def near_transition(self, instant: datetime, window: timedelta = DST_WINDOW) -> bool:
        return self.offset(instant - window) != self.offset(instant + window)

    def transitions_between(self, low: datetime, high: datetime) -> bool:
        """Whether the offset changes between two instants (at all, if later than the tabulated years)."""
        if high.year > LAST_YEAR:
            return bool(self.transitions)
        return any(low <= t <= high for t in self.transitions)

    def transition_between(self, low: datetime, high: datetime) -> datetime:
        """The instant the offset changes, given one instant on each side of it."""
        low_offset = self.offset(low)
        low_s, high_s = int(low.timestamp()), int(high.timestamp()) + 1
        while high_s - low_s > 1:
            middle = (low_s + high_s) // 2
            if self.offset(datetime.fromtimestamp(middle, UTC)) == low_offset:
                low_s = middle
            else:
                high_s = middle
        return datetime.fromtimestamp(high_s, UTC)

    def wall(self, instant: datetime) -> datetime:
        """The wall-clock time of an instant, naive."""
        return instant.astimezone(self.tz).replace(tzinfo=None)

    def instants(self, wall: datetime, fixed_time: bool) -> list[datetime]:
        """docs/triggers.md's rule: a missing time fires at the first instant after the gap; a repeated one at its first
        occurrence for a fixed-time job, at both otherwise."""
        first = wall.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if self.wall(first) != wall:
            # In a gap zoneinfo's two readings straddle the transition; the first instant after it is the transition.
            return [self.transition_between(min(first, second), max(first, second))]
        earlier, later = min(first, second), max(first, second)
        return [earlier] if fixed_time else [earlier, later]

    def earliest(self, wall: datetime) -> datetime:
        return self.instants(wall, fixed_time=True)[0]

    def format(self, instant: datetime) -> str:
        return instant.astimezone(self.tz).isoformat()


ZONE_CACHE: dict[str, Zone] = {}


def zone(name: str) -> Zone:
    if name not in ZONE_CACHE:
        ZONE_CACHE[name] = Zone(name)
    return ZONE_CACHE[name]


def as_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


# ---------------------------------------------------------------------------------------------------------------
# Models: a trigger's fire times, once as APScheduler computes them and once by the DST rule of docs/triggers.md.
# Each model answers `initial(now)` (the first fire with no previous one) and `first_at_or_after(t)` (its own
# schedule's first fire at or after t), the two questions an and/or asks its children.


class Model:
    zones: list[str]

    def initial(self, now):
        return self.first_at_or_after(now)

    def first_at_or_after(self, t):
        raise NotImplementedError

    def sequence(self, now, count):
        """The preview: the first fire from now, then each next one after the previous."""
        times = []
        fire = self.initial(now)
        while fire is not None and len(times) < count:
            times.append(fire)
            fire = self.first_at_or_after(fire + ONE_MICROSECOND)
        return times


class DateModel(Model):
    def __init__(self, run_date, zone_name):
        self.run_date, self.zones = run_date, [zone_name]

    def initial(self, now):
        return self.run_date

    def first_at_or_after(self, t):
        return self.run_date if self.run_date >= t else None


class IntervalModel(Model):
    """Absolute arithmetic: APScheduler's own trigger serves both references."""

    def __init__(self, trigger: IntervalTrigger, zone_name):
        self.trigger, self.zones = trigger, [zone_name]

    def first_at_or_after(self, t):
        try:
            return as_utc(self.trigger.get_next_fire_time(None, t))
        except (OverflowError, ValueError):
            return None  # past Python's year 9999: an `and` searching that far finds nothing either way

    def sequence(self, now, count):
        times, previous = [], None
        while len(times) < count:
            previous = as_utc(self.trigger.get_next_fire_time(previous, now))
            if previous is None:
                break
            times.append(previous)
        return times


class ListModel(Model):
    """Fire times produced lazily in increasing order by `produce()`; searched by `first_at_or_after`."""

    def __init__(self):
        self.fires: list[datetime] = []
        self.exhausted = False

    def produce(self):
        """Append more fire times, or set `exhausted`."""
        raise NotImplementedError

    def first_at_or_after(self, t):
        while not self.exhausted and (not self.fires or self.fires[-1] < t):
            self.produce()
        index = bisect.bisect_left(self.fires, t)
        return self.fires[index] if index < len(self.fires) else None


def next_date_past_last_year(trigger, previous) -> bool:
    """Whether APScheduler's next calendarinterval date after `previous` lies past year 9999, where apsched's grid
    ends and APScheduler itself would loop forever (it takes Python's out-of-range error for a missing date)."""
    year, month = previous.year, previous.month
    for _ in range(4800):
        month += trigger.months
        year += trigger.years + (month - 1) // 12
        month = (month - 1) % 12 + 1
        if year > LAST_CALENDAR_YEAR:
            return True
        try:
            next_date = date(year, month, previous.day)
        except ValueError:
            continue
        try:
            return (next_date + timedelta(trigger.days + trigger.weeks * 7)).year > LAST_CALENDAR_YEAR
        except OverflowError:
            return True
    return True


class ApsCalendarModel(ListModel):
    """APScheduler's chain from start_date, which ignores `now`; apsched then takes the first at or after now."""

    def __init__(self, trigger: CalendarIntervalTrigger, zone_name):
        super().__init__()
        self.trigger, self.zones = trigger, [zone_name]

    def produce(self):
        previous = self.fires[-1].astimezone(self.trigger.timezone) if self.fires else None
        if previous is not None and next_date_past_last_year(self.trigger, previous):
            fire = None
        else:
            fire = as_utc(self.trigger.get_next_fire_time(previous, datetime.now(UTC)))
        if fire is None:
            self.exhausted = True
        else:
            self.fires.append(fire)


class DesignCalendarModel(ListModel):
    """The same date sequence from APScheduler in UTC (nothing skipped), each wall time mapped by docs/triggers.md."""

    def __init__(self, kwargs, zone_name):
        super().__init__()
        self.utc = CalendarIntervalTrigger(**{**kwargs, "timezone": "UTC"})
        self.zone, self.zones = zone(zone_name), [zone_name]
        self.previous_wall = None

    def produce(self):
        if self.previous_wall is not None and next_date_past_last_year(self.utc, self.previous_wall):
            wall = None
        else:
            wall = self.utc.get_next_fire_time(self.previous_wall, datetime.now(UTC))
        if wall is None:
            self.exhausted = True
            return
        self.previous_wall = wall
        self.fires.append(self.zone.earliest(wall.replace(tzinfo=None)))


class ApsCronModel(Model):
    def __init__(self, trigger: CronTrigger, zone_name):
        self.trigger, self.zones = trigger, [zone_name]

    def first_at_or_after(self, t):
        return as_utc(self.trigger.get_next_fire_time(None, t))

    def sequence(self, now, count):
        times, previous = [], None
        while len(times) < count:
            # 3.11.3 starts from min(now, previous + 1 µs): it only advances when now is past the previous fire.
            at = now if previous is None else max(now, previous + ONE_MICROSECOND)
            fire = as_utc(self.trigger.get_next_fire_time(previous, at))
            if fire is None:
                break
            times.append(fire)
            previous = fire.astimezone(self.trigger.timezone)
        return times


def single_valued(field) -> bool:
    class At:
        pass

    matches = 0
    for value in range(0, 60 if field.name != "hour" else 24):
        at = At()
        setattr(at, field.name, value)
        if field.get_next_value(at) == value:
            matches += 1
    return matches == 1


class DesignCronModel(Model):
    """Matching wall-clock times from the same cron in UTC, each mapped to instants by docs/triggers.md's rule."""

    def __init__(self, fields, start, end, zone_name):
        self.start, self.end = start, end
        self.zone, self.zones = zone(zone_name), [zone_name]
        # Bounded a day past end_date's wall time, the UTC search stops there instead of searching to year 9999.
        wall_end = None if end is None else self.zone.wall(end).replace(tzinfo=UTC) + timedelta(days=1)
        self.utc = CronTrigger(**fields, end_date=wall_end, timezone="UTC")
        by_name = {field.name: field for field in self.utc.fields}
        self.fixed_time = all(single_valued(by_name[name]) for name in ("hour", "minute", "second"))

    def walls_from(self, wall):
        previous = None
        at = wall.replace(tzinfo=UTC)
        while True:
            fire = self.utc.get_next_fire_time(previous, at)
            if fire is None:
                return
            yield fire.replace(tzinfo=None)
            previous, at = fire, fire + ONE_MICROSECOND

    def first_at_or_after(self, t):
        if self.start is not None:
            t = max(t, self.start)
        if not self.zone.near_transition(t, REGULAR_SPAN):
            # No transition within a day or so: wall times from wall(t) map one to one, in order, to instants.
            wall = next(self.walls_from(self.zone.wall(t)), None)
            if wall is None:
                return None
            (instant,) = self.zone.instants(wall, self.fixed_time)[:1]
            if instant < t + REGULAR_SPAN and not self.zone.near_transition(instant, REGULAR_SPAN):
                return instant if self.end is None or instant <= self.end else None
        # A wall time w maps to instants in [w - max_offset, w - min_offset]: start where an instant >= t can come
        # from, stop once no later wall time can map before the best candidate.
        best = None
        for wall in self.walls_from(self.zone.wall(t).replace(tzinfo=None) + (self.zone.min_offset - self.zone.max_offset)):
            if best is not None and wall.replace(tzinfo=UTC) - self.zone.max_offset > best:
                break
            if self.end is not None and wall.replace(tzinfo=UTC) - self.zone.max_offset > self.end:
                break
            for instant in self.zone.instants(wall, self.fixed_time):
                if instant >= t and (self.end is None or instant <= self.end) and (best is None or instant < best):
                    best = instant
        return best


class CombiningModel(Model):
    """apsched's and/or over any child models: the union or intersection of the children's own schedules."""

    def __init__(self, mode, children):
        self.mode, self.children = mode, children
        self.zones = [name for child in children for name in child.zones]

    def initial(self, now):
        firsts = [child.initial(now) for child in self.children]
        if self.mode == "and":
            if None in firsts:
                return None
            return self.first_at_or_after(min(firsts))
        firsts = [f for f in firsts if f is not None]
        return self.first_at_or_after(min(firsts)) if firsts else None

    def first_at_or_after(self, t):
        if self.mode == "or":
            fires = [f for f in (child.first_at_or_after(t) for child in self.children) if f is not None]
            return min(fires) if fires else None
        candidates = [child.first_at_or_after(t) for child in self.children]
        if None in candidates:
            return None
        for _ in range(MAX_AND_STEPS):
            latest = max(candidates)
            if all(c == latest for c in candidates):
                return latest
            for i, child in enumerate(self.children):
                if candidates[i] < latest:
                    candidates[i] = child.first_at_or_after(latest)
                    if candidates[i] is None:
                        return None
        return None


# ---------------------------------------------------------------------------------------------------------------
# Generation: each case is (kind, apsched JSON, APScheduler model, DST-rule model)


class Case:
    def __init__(self, kind, spec, aps, design, now, count):
        self.kind, self.spec, self.aps, self.design, self.now, self.count = kind, spec, aps, design, now, count


def pick_zone(rng):
    return rng.choice(DST_ZONES) if rng.random() < 0.75 else rng.choice(ZONES)


def pick_now(rng, zone_name):
    """Half the time anywhere in the generated years, half the time shortly before one of the zone's transitions."""
    z = zone(zone_name)
    if z.transitions and rng.random() < 0.5:
        transition = rng.choice([t for t in z.transitions if t.year in (2025, 2026, 2027)])
        now = transition - timedelta(seconds=rng.randrange(0, 4 * 86_400))
    else:
        start = datetime(2025, 1, 1, tzinfo=UTC)
        now = start + timedelta(seconds=rng.randrange(0, 3 * 365 * 86_400))
    if rng.random() < 0.4:
        now = now.replace(second=0)
    if rng.random() < 0.1:
        now = now.replace(microsecond=500_000)
    return now


def write_time(rng, instant, zone_name, allow_naive=True):
    """RFC 3339 in the zone, or (where the wall time is unambiguous) naive, read in the trigger's zone by both."""
    z = zone(zone_name)
    local = instant.astimezone(z.tz)
    wall = local.replace(tzinfo=None)
    if allow_naive and rng.random() < 0.3 and z.instants(wall, False) == [instant]:
        return wall.isoformat(sep=" ")
    return local.isoformat()


def gen_date(rng, zone_name, now):
    run_date = (now + timedelta(seconds=rng.randrange(-30 * 86_400, 60 * 86_400))).replace(microsecond=0)
    text = write_time(rng, run_date, zone_name)
    spec = {"type": "date", "run_date": text, "timezone": zone_name}
    model = DateModel(run_date, zone_name)
    return spec, model, model


INTERVAL_UNITS = [("weeks", 1, 4), ("days", 1, 10), ("hours", 1, 48), ("minutes", 1, 150), ("seconds", 1, 300)]


def gen_interval(rng, zone_name, now):
    units = {}
    for name, low, high in rng.sample(INTERVAL_UNITS, rng.choice([1, 1, 1, 2, 3])):
        units[name] = rng.randint(low, high) if rng.random() < 0.8 else rng.randint(0, high)
    if rng.random() < 0.1:
        units["seconds"] = rng.choice([0.5, 1.25, 7.75])
    if sum(units.values()) == 0:
        units["minutes"] = 5
    length = timedelta(**units)
    spec = {"type": "interval", **units, "timezone": zone_name}
    kwargs = dict(units, timezone=zone_name)
    if rng.random() < 0.8:
        start = (now + timedelta(seconds=rng.randrange(-200 * 86_400, 3 * 86_400))).replace(microsecond=0)
        spec["start_date"] = kwargs["start_date"] = write_time(rng, start, zone_name)
    else:
        start = now + length  # what apsched's resolve fixes; APScheduler is given the same start
        kwargs["start_date"] = start.astimezone(zone(zone_name).tz)
    if rng.random() < 0.3:
        end = start + length * rng.randint(0, 30) + timedelta(seconds=rng.randrange(0, 3600))
        spec["end_date"] = kwargs["end_date"] = write_time(rng, end, zone_name)
    model = IntervalModel(IntervalTrigger(**kwargs), zone_name)
    return spec, model, model


def transition_wall_time(rng, zone_name, now):
    """A wall-clock time inside (or at the edge of) the gap or fold of a transition soon after `now`, if any."""
    z = zone(zone_name)
    upcoming = [t for t in z.transitions if now - timedelta(days=1) <= t <= now + timedelta(days=20)]
    if not upcoming:
        return None
    t = rng.choice(upcoming)
    before, after = z.offset(t - timedelta(seconds=1)), z.offset(t)
    low, high = sorted([(t + before).replace(tzinfo=None), (t + after).replace(tzinfo=None)])
    span = int((high - low).total_seconds())
    wall = low + timedelta(seconds=rng.choice([0, span, rng.randrange(span) // 60 * 60, rng.randrange(span)]))
    return wall


def gen_time_of_day(rng, zone_name=None, now=None):
    if zone_name is not None and rng.random() < 0.5:
        wall = transition_wall_time(rng, zone_name, now)
        if wall is not None:
            return wall.hour, wall.minute, wall.second
    hour = rng.choice([0, 1, 2, 2, 3, 23, rng.randrange(24)])
    minute = rng.choice([0, 15, 30, 45, rng.randrange(60)])
    second = rng.choice([0, 0, rng.randrange(60)])
    return hour, minute, second


def gen_calendar(rng, zone_name, now, time_of_day=None, start=None):
    units = {}
    while not any(units.values()):
        for name, high in rng.sample([("years", 2), ("months", 13), ("weeks", 3), ("days", 10)], rng.choice([1, 1, 2])):
            units[name] = rng.randint(1, high)
    hour, minute, second = time_of_day or gen_time_of_day(rng, zone_name, now)
    today = zone(zone_name).wall(now).date()
    wall = transition_wall_time(rng, zone_name, now) if time_of_day is None and start is None else None
    if wall is not None and rng.random() < 0.4:
        # Aim the grid at a transition: its wall time on its day, reached from a start some steps earlier.
        hour, minute, second = wall.hour, wall.minute, wall.second
        start = wall.date() - timedelta(days=(units.get("days", 0) + 7 * units.get("weeks", 0)) * rng.randint(0, 2))
    if start is None and rng.random() < 0.85:
        start = today + timedelta(days=rng.randrange(-400, 20))
        if rng.random() < 0.3:
            for day in sorted([28, 29, 30, 31], key=lambda _: rng.random()):
                try:
                    start = start.replace(day=day)
                    break
                except ValueError:
                    continue  # that day does not exist in this month
        if rng.random() < 0.05:
            start = date(2024, 2, 29)
    spec = {"type": "calendarinterval", **units, "hour": hour, "minute": minute, "second": second}
    spec["timezone"] = zone_name
    kwargs = dict(units, hour=hour, minute=minute, second=second)
    if start is not None:
        spec["start_date"] = start.isoformat()
    kwargs["start_date"] = start or today  # apsched's resolve: today in the zone
    if rng.random() < 0.3:
        end = kwargs["start_date"] + timedelta(days=rng.randrange(0, 500))
        spec["end_date"] = kwargs["end_date"] = end.isoformat()
    aps = ApsCalendarModel(CalendarIntervalTrigger(**kwargs, timezone=zone_name), zone_name)
    return spec, aps, DesignCalendarModel(kwargs, zone_name)


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def gen_numeric_expression(rng, low, high):
    form = rng.randrange(7)
    a = rng.randint(low, high)
    b = rng.randint(a, high)
    if form == 0:
        return "*"
    if form == 1:
        return a if rng.random() < 0.5 else str(a)
    if form == 2:
        return f"{a}-{b}"
    if form == 3:
        return f"*/{rng.randint(1, max(1, (high - low) // 2))}"
    if form == 4:
        return f"{a}-{b}/{rng.randint(1, max(1, b - a))}" if b > a else f"{a}"
    if form == 5:
        return f"{a},{rng.randint(low, high)}"
    return f"{a}-{b},{rng.randint(low, high)}"


def gen_cron_fields(rng, zone_name, now):
    fields = {}
    for name in rng.sample(["month", "day", "week", "day_of_week", "hour", "minute", "second", "year"], rng.randint(1, 4)):
        if name == "year":
            a = rng.randint(2025, 2029)
            fields[name] = rng.choice([str(a), f"{a}-{a + rng.randint(0, 3)}", f"{a},{a + 2}", "*/2", "*"])
        elif name == "month":
            fields[name] = rng.choice(
                [gen_numeric_expression(rng, 1, 12), rng.choice(MONTHS), f"{rng.choice(MONTHS[:6])}-{rng.choice(MONTHS[6:])}",
                 f"{rng.choice(MONTHS)},{rng.choice(MONTHS)}"]
            )
        elif name == "day":
            ordinal = rng.choice(["1st", "2nd", "3rd", "4th", "5th", "last"])
            fields[name] = rng.choice(
                [gen_numeric_expression(rng, 1, 31), "last", f"{ordinal} {rng.choice(WEEKDAYS)}", f"2nd fri",
                 f"last {rng.choice(WEEKDAYS)}", f"1,last"]
            )
        elif name == "week":
            fields[name] = rng.choice([gen_numeric_expression(rng, 1, 53), f"*/{rng.randint(2, 4)}"])
        elif name == "day_of_week":
            fields[name] = rng.choice(
                [gen_numeric_expression(rng, 0, 6), rng.choice(WEEKDAYS), "mon-fri", "sat,sun",
                 f"{rng.choice(WEEKDAYS[:3])}-{rng.choice(WEEKDAYS[4:])}"]
            )
        elif name == "hour":
            wall = transition_wall_time(rng, zone_name, now)
            near = [wall.hour] if wall is not None else [2]
            fields[name] = rng.choice([gen_numeric_expression(rng, 0, 23), rng.choice([1, 2, 3, "2-3", "0,2"]), near[0]])
        else:
            fields[name] = gen_numeric_expression(rng, 0, 59)
    if any(name in str(fields.get("day", "")) for name in WEEKDAYS):
        # "2nd fri" with a day_of_week is mostly impossible, and APScheduler takes seconds to search to year 9999.
        fields.pop("day_of_week", None)
    return fields


def gen_cron(rng, zone_name, now, fields=None):
    fields = fields or gen_cron_fields(rng, zone_name, now)
    spec = {"type": "cron", **fields, "timezone": zone_name}
    start = end = None
    if rng.random() < 0.3:
        start = (now + timedelta(seconds=rng.randrange(-30 * 86_400, 10 * 86_400))).replace(microsecond=0)
        spec["start_date"] = write_time(rng, start, zone_name)
    if rng.random() < 0.2:
        end = (max(now, start or now) + timedelta(seconds=rng.randrange(0, 200 * 86_400))).replace(microsecond=0)
        spec["end_date"] = write_time(rng, end, zone_name)
    aps_fields = {k: v for k, v in fields.items()}
    trigger = CronTrigger(**aps_fields, start_date=spec.get("start_date"), end_date=spec.get("end_date"), timezone=zone_name)
    return spec, ApsCronModel(trigger, zone_name), DesignCronModel(aps_fields, start, end, zone_name)


def gen_crontab(rng, zone_name, now):
    minute = gen_numeric_expression(rng, 0, 59)
    hour = rng.choice([gen_numeric_expression(rng, 0, 23), "2", "*"])
    day, weekday = "*", "*"
    if rng.random() < 0.5:
        day = rng.choice([gen_numeric_expression(rng, 1, 28), "*"])
    else:
        weekday = rng.choice(["mon-fri", "sat,sun", rng.choice(WEEKDAYS), "*"])
    month = rng.choice(["*", gen_numeric_expression(rng, 1, 12), rng.choice(MONTHS)])
    expression = " ".join(str(part) for part in (minute, hour, day, month, weekday))
    spec = {"type": "cron", "crontab": expression, "timezone": zone_name}
    trigger = CronTrigger.from_crontab(expression, timezone=zone_name)
    fields = dict(minute=str(minute), hour=str(hour), day=day, month=str(month), day_of_week=weekday)
    return spec, ApsCronModel(trigger, zone_name), DesignCronModel(fields, None, None, zone_name)


LEAF_GENERATORS = {
    "date": gen_date,
    "interval": gen_interval,
    "calendarinterval": gen_calendar,
    "cron": gen_cron,
    "crontab": gen_crontab,
}


def gen_child(rng, child_kinds, zone_name, now, depth):
    if depth < 2 and rng.random() < 0.12:
        return gen_combination(rng, rng.choice(COMBINING_KINDS), child_kinds, zone_name, now, depth + 1)
    return LEAF_GENERATORS[rng.choice(child_kinds)](rng, zone_name, now)


def gen_aligned_and_children(rng, child_kinds, zone_name, now):
    """Children built around one wall-clock time and start so that an `and` has shared times to find."""
    time_of_day = gen_time_of_day(rng, zone_name, now)
    start = zone(zone_name).wall(now).date() + timedelta(days=rng.randrange(-60, 5))
    first = zone(zone_name).earliest(datetime.combine(start, datetime.min.time()).replace(
        hour=time_of_day[0], minute=time_of_day[1], second=time_of_day[2]))
    children = []
    for _ in range(rng.choice([2, 2, 3])):
        kind = rng.choice(child_kinds)
        if kind == "calendarinterval":
            children.append(gen_calendar(rng, zone_name, now, time_of_day, start))
        elif kind == "interval":
            hours = 24 * rng.randint(1, 4)
            spec = {"type": "interval", "hours": hours, "start_date": zone(zone_name).format(first), "timezone": zone_name}
            model = IntervalModel(IntervalTrigger(hours=hours, start_date=spec["start_date"], timezone=zone_name), zone_name)
            children.append((spec, model, model))
        elif kind in CRON_KINDS:
            fields = {"hour": time_of_day[0], "minute": time_of_day[1], "second": time_of_day[2]}
            if rng.random() < 0.5:
                fields["day_of_week"] = rng.choice(["mon-fri", "sat,sun", "*", rng.choice(WEEKDAYS)])
            children.append(gen_cron(rng, zone_name, now, fields))
        else:
            offset = timedelta(days=rng.randint(0, 20))
            run_date = zone(zone_name).earliest(zone(zone_name).wall(first) + offset)
            spec = {"type": "date", "run_date": zone(zone_name).format(run_date), "timezone": zone_name}
            children.append((spec, DateModel(run_date, zone_name), DateModel(run_date, zone_name)))
    return children


def gen_combination(rng, kind, child_kinds, zone_name, now, depth=0):
    if kind == "and" and rng.random() < 0.7:
        children = gen_aligned_and_children(rng, child_kinds, zone_name, now)
    else:
        children = [gen_child(rng, child_kinds, pick_zone(rng) if rng.random() < 0.3 else zone_name, now, depth)
                    for _ in range(rng.choice([1, 2, 2, 3]))]
    spec = {"type": kind, "triggers": [child[0] for child in children]}
    if rng.random() < 0.6:
        spec["timezone"] = zone_name
        # Children without a zone inherit this one.
        for child_spec in spec["triggers"]:
            if child_spec.get("timezone") == zone_name and rng.random() < 0.5:
                del child_spec["timezone"]
    aps = CombiningModel(kind, [child[1] for child in children])
    design = CombiningModel(kind, [child[2] for child in children])
    return spec, aps, design


def generate(rng, kind, child_kinds):
    zone_name = pick_zone(rng)
    now = pick_now(rng, zone_name)
    count = rng.choice([5, 10, 20, 30])
    if kind in COMBINING_KINDS:
        spec, aps, design = gen_combination(rng, kind, child_kinds, zone_name, now)
    else:
        spec, aps, design = LEAF_GENERATORS[kind](rng, zone_name, now)
    return Case(kind, spec, aps, design, now, count)


# ---------------------------------------------------------------------------------------------------------------
# Running and judging


def run_apsched(binary, case):
    command = [binary, "preview", "--trigger", json.dumps(case.spec), "--count", str(case.count),
               "--now", case.now.isoformat()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=APSCHED_TIMEOUT_SECONDS)
    if result.returncode != 0:
        return None, result.stderr.strip()
    return [datetime.fromisoformat(line).astimezone(UTC) for line in result.stdout.split()], None


def within_tz_horizon(times):
    return [t for t in times if t < TZ_DATA_HORIZON]


def judge(case, ours):
    """'exact', 'DST rule', 'APScheduler DST error', or a reason for failure.

    'APScheduler DST error': apsched equals the DST-rule reference, and APScheduler differs away from any transition
    but with one between `now` and the difference. APScheduler 3.11.3's cron adds a naive difference to an aware
    time, so when the offset at the fire differs from the offset at the search start it lands an hour off and, at a
    field boundary, skips ahead (a yearly 1 January fire searched from August in America/Santiago comes out a year
    late). The DST-rule reference, which enumerates the same cron's wall-clock times in UTC, has no such error.
    """
    ours = within_tz_horizon(ours)
    aps = within_tz_horizon(case.aps.sequence(case.now, case.count))
    if ours == aps:
        return "exact", aps, None
    design = within_tz_horizon(case.design.sequence(case.now, case.count))
    if ours != design:
        return "differs from both references", aps, design
    horizon = min([times[-1] for times in (ours, aps) if len(times) == case.count], default=None)
    differences = {t for t in set(ours) ^ set(aps) if horizon is None or t <= horizon}
    zones = [zone(name) for name in set(case.aps.zones)]
    far = [t for t in differences if not any(z.near_transition(t) for z in zones)]
    if not far:
        return "DST rule", aps, design
    unexplained = [t for t in far if not any(z.offset(case.now) != z.offset(t) or z.transitions_between(case.now, t)
                                             for z in zones)]
    if unexplained:
        return f"equals the DST-rule reference but differs from APScheduler with no DST change: {unexplained}", aps, design
    return "APScheduler DST error", aps, design


def show(times, zone_name):
    return [zone(zone_name).format(t) for t in times]


def print_case(case, ours, aps, design):
    zone_name = case.spec.get("timezone", "UTC")
    print(f"  trigger: {json.dumps(case.spec)}")
    print(f"  now:     {case.now.isoformat()}   count: {case.count}")
    for label, times in (("apsched", ours), ("APScheduler", aps), ("DST rule", design)):
        if times is not None:
            print(f"  {label + ':':<13}{show(times, zone_name)}")


def self_check(case):
    """Without apsched: the two references must agree except at transitions (validates the DST-rule model)."""
    return judge(case, case.design.sequence(case.now, case.count))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apsched", help="path to the apsched binary")
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(ALL_KINDS), help=f"comma-separated, of {ALL_KINDS}")
    parser.add_argument("--self-check", action="store_true",
                        help="compare the APScheduler and DST-rule references with each other, without apsched")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - set(ALL_KINDS)
    if unknown or not kinds:
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {ALL_KINDS}")
    if not args.apsched and not args.self_check:
        parser.error("--apsched is required (or --self-check)")
    child_kinds = [k for k in LEAF_KINDS if k in kinds] or [k for k in LEAF_KINDS if k not in CRON_KINDS]

    verdicts = ["exact", "DST rule", "APScheduler DST error"]
    table = {kind: {"cases": 0, **{verdict: 0 for verdict in verdicts}, "failed": 0} for kind in kinds}
    failures = 0
    for index in range(args.cases):
        kind = kinds[index % len(kinds)]
        rng = random.Random(f"{args.seed}-{index}")
        case = generate(rng, kind, child_kinds)
        if args.self_check:
            verdict, aps, design = self_check(case)
            ours, error = case.design.sequence(case.now, case.count), None
        else:
            ours, error = run_apsched(args.apsched, case)
            verdict, aps, design = ("apsched failed: " + error, None, None) if error else judge(case, ours)
        row = table[kind]
        row["cases"] += 1
        if verdict in verdicts:
            row[verdict] += 1
            if args.verbose:
                print(f"case {index} ({kind}): {verdict}")
                if verdict != "exact":
                    print_case(case, ours, aps, design)
            continue
        row["failed"] += 1
        failures += 1
        print(f"\nFAILED case {index} (seed {args.seed}, kind {kind}): {verdict}")
        print_case(case, ours, aps, design)

    print(f"\n{'kind':<18}{'cases':>7}{'exact':>8}{'DST rule':>10}{'APS DST error':>15}{'failed':>8}")
    for kind, row in table.items():
        print(f"{kind:<18}{row['cases']:>7}{row['exact']:>8}{row['DST rule']:>10}{row['APScheduler DST error']:>15}"
              f"{row['failed']:>8}")
    total = sum(row["cases"] for row in table.values())
    agreeing = total - failures
    print(f"\nagreement: {agreeing}/{total} ({100.0 * agreeing / max(total, 1):.2f}%): "
          f"{sum(row['exact'] for row in table.values())} exact, "
          f"{sum(row['DST rule'] for row in table.values())} by the DST rule at a transition, "
          f"{sum(row['APScheduler DST error'] for row in table.values())} where APScheduler's cron errs after a DST change")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
