"""Generate aps_fixtures.json: fire times of random cron expressions as APScheduler 3.11.3 computes them.

The Rust test `agrees_with_apscheduler` replays every case. Cases whose fire times straddle a DST transition are
left out: there the DST rule of docs/triggers.md deliberately differs from APScheduler's.

    /work/venv-aps/bin/python src/trigger/cron/testdata/aps_fixtures.py > src/trigger/cron/testdata/aps_fixtures.json
"""

import json
import random
import signal
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import apscheduler
from apscheduler.triggers.cron import CronTrigger

CASES = 600
FIRES_PER_CASE = 8
# Zones with DST (cases near transitions are dropped) and without it, including odd offsets.
ZONES = [
    "UTC", "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
    "Pacific/Chatham", "Asia/Tokyo", "Asia/Kolkata", "Asia/Kathmandu",
]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
POSITIONS = ["1st", "2nd", "3rd", "4th", "5th", "last"]
RANGES = {
    "year": (2020, 2040), "month": (1, 12), "day": (1, 31), "week": (1, 53),
    "day_of_week": (0, 6), "hour": (0, 23), "minute": (0, 59), "second": (0, 59),
}
# How likely each field is to be set: the finer fields more often, so cases fire often enough to compare.
SET_PROBABILITY = {
    "year": 0.05, "month": 0.2, "day": 0.3, "week": 0.08, "day_of_week": 0.3,
    "hour": 0.5, "minute": 0.5, "second": 0.35,
}


def term(rng, field):
    low, high = RANGES[field]
    a = rng.randint(low, high)
    b = rng.randint(a, high)
    kind = rng.random()
    if field == "day" and kind < 0.15:
        return rng.choice(["last", f"{rng.choice(POSITIONS)} {rng.choice(WEEKDAYS)}"])
    if field == "month" and kind < 0.15:
        first = rng.randint(0, 11)
        return MONTHS[first] if rng.random() < 0.5 else f"{MONTHS[first]}-{MONTHS[rng.randint(first, 11)]}"
    if field == "day_of_week" and kind < 0.3:
        first = rng.randint(0, 6)
        return WEEKDAYS[first] if rng.random() < 0.5 else f"{WEEKDAYS[first]}-{WEEKDAYS[rng.randint(first, 6)]}"
    choices = [
        "*",
        f"*/{rng.randint(1, max(1, (high - low) // 2))}",
        str(a),
        f"{a}-{b}",
        f"{a}-{b}/{rng.randint(1, max(1, b - a))}",
        f"{a}/{rng.randint(1, max(1, high - a))}",
    ]
    return rng.choice(choices)


def expression(rng, field):
    if field != "year" and rng.random() < 0.2:
        return ",".join(term(rng, field) for _ in range(rng.randint(2, 3)))
    value = term(rng, field)
    # Integers as clients may send them.
    return int(value) if value.isdigit() and rng.random() < 0.5 else value


class Timeout(Exception):
    pass


def on_alarm(signum, frame):
    raise Timeout()


def offset_constant(zone, start, end):
    """No DST transition between two instants (sampled hourly: every real transition lasts months)."""
    offset = start.astimezone(zone).utcoffset()
    t = start
    while t < end:
        t = min(t + timedelta(hours=1), end)
        if t.astimezone(zone).utcoffset() != offset:
            return False
    return True


def main():
    rng = random.Random(20261125)
    signal.signal(signal.SIGALRM, on_alarm)
    cases = []
    while len(cases) < CASES:
        fields = {f: expression(rng, f) for f in RANGES if rng.random() < SET_PROBABILITY[f]}
        if not fields:
            continue
        zone_name = rng.choice(ZONES)
        zone = ZoneInfo(zone_name)
        now = datetime(2020, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randint(0, 15 * 365 * 86400))
        if rng.random() < 0.3:
            now += timedelta(microseconds=rng.randint(1, 999_999))
        bounds = {}
        if rng.random() < 0.15:
            bounds["start_date"] = now + timedelta(seconds=rng.randint(0, 60 * 86400))
        if rng.random() < 0.15:
            bounds["end_date"] = now + timedelta(seconds=rng.randint(0, 400 * 86400))
        if "start_date" in bounds and "end_date" in bounds and bounds["end_date"] < bounds["start_date"]:
            del bounds["end_date"]
        try:
            trigger = CronTrigger(timezone=zone, **fields, **bounds)
        except ValueError:
            continue
        fires = []
        previous, current = None, now
        signal.alarm(2)
        try:
            for _ in range(FIRES_PER_CASE):
                fire = trigger.get_next_fire_time(previous, current)
                if fire is None:
                    break
                fires.append(fire)
                previous, current = fire, fire
        except (Timeout, OverflowError, ValueError):
            continue
        finally:
            signal.alarm(0)
        last = fires[-1] if fires else now
        if not offset_constant(zone, now, last):
            continue
        if fires and fires[-1].year > 2100:
            continue
        cases.append({
            "fields": fields,
            "timezone": zone_name,
            **{k: v.astimezone(timezone.utc).isoformat() for k, v in bounds.items()},
            "now": now.isoformat(),
            "fires": [f.astimezone(timezone.utc).isoformat() for f in fires],
        })
    json.dump({"apscheduler": apscheduler.__version__, "cases": cases}, sys.stdout, indent=None)
    sys.stdout.write("\n")


main()
