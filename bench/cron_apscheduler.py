"""APScheduler 3.11's CronTrigger.get_next_fire_time on the expressions of benches/cron.rs, chained the same way
(each fire fed back as previous and now, restarting after CHAIN_LENGTH fires). Prints one JSON object: nanoseconds
per call for each benchmark, the best of REPEATS timings.

    python bench/cron_apscheduler.py
"""

import json
import timeit
from datetime import datetime, timezone

import apscheduler
from apscheduler.triggers.cron import CronTrigger

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CHAIN_LENGTH = 1000
ZONE = "Europe/Berlin"
REPEATS = 5

EXPRESSIONS = {
    "cron_dense_every_5_seconds": {"second": "*/5"},
    "cron_sparse_last_friday_of_february": {"month": "feb", "day": "last fri", "hour": 3},
}


def chain(trigger):
    previous = None
    for _ in range(CHAIN_LENGTH):
        previous = trigger.get_next_fire_time(previous, previous or START)


def main():
    results = {"apscheduler": apscheduler.__version__}
    for name, fields in EXPRESSIONS.items():
        trigger = CronTrigger(timezone=ZONE, **fields)
        best = min(timeit.repeat(lambda: chain(trigger), number=1, repeat=REPEATS))
        results[name] = best / CHAIN_LENGTH * 1e9
    print(json.dumps(results))


main()
