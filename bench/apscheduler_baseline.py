"""APScheduler 3.11 as the baseline of bench/suite.py: a BackgroundScheduler with a ThreadPoolExecutor and the
default MemoryJobStore (its fastest store), whose job POSTs to the benchmark sink with a pooled `requests`
session and the same `apsched-job-id` header apsched sends. Misfire grace is unlimited and coalescing off, so every
fire is delivered however late, as apsched is configured in the same run.

    python bench/apscheduler_baseline.py burst SINK_URL JOBS WORKERS
        JOBS date jobs due at once: prints {"released": unix seconds when the scheduler was resumed,
        "delivered": how many reached the sink} once the sink has every delivery or has been quiet for 5 s.
    python bench/apscheduler_baseline.py interval SINK_URL JOBS WORKERS PERIOD START_US STEP_US END_US
        JOBS interval jobs every PERIOD seconds, job i starting at START_US + i * STEP_US; runs until END_US,
        then prints {"ready": unix seconds when every job was added and the scheduler running}.
    python bench/apscheduler_baseline.py cron SINK_URL JOBS WORKERS AT_US ZONES
        JOBS daily cron jobs, spread over the comma-separated ZONES, each at the wall-clock time AT_US has in its
        zone (so all fire at AT_US, as `0 0 * * *` does at midnight); prints {"delivered", "peak_rss_kib"} once the
        sink has every delivery or has been quiet for 5 s.

With APSCHED_BENCH_ARRIVALS_LOG set (a sink without `/count`, such as nginx), deliveries are counted as the lines
added to that file since the start.
"""

import json
import os
import resource
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import requests
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

SESSION_LOCAL = threading.local()
POLL_SECONDS = 0.01
QUIET_SECONDS = 5


def session():
    """One pooled session per worker thread (requests.Session is not documented as thread-safe)."""
    if not hasattr(SESSION_LOCAL, "session"):
        SESSION_LOCAL.session = requests.Session()
    return SESSION_LOCAL.session


def deliver(url, job_id):
    session().post(url, json={}, headers={"apsched-job-id": job_id}).close()


def scheduler(workers):
    return BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(workers)},
        job_defaults={"misfire_grace_time": None, "coalesce": False},
        timezone=timezone.utc,
    )


ARRIVALS_LOG = os.environ.get("APSCHED_BENCH_ARRIVALS_LOG")
# Where the log was read up to and how many lines were read since the start: each poll reads only what is new.
arrivals_read = {"offset": os.path.getsize(ARRIVALS_LOG) if ARRIVALS_LOG else 0, "lines": 0}


def sink_count(sink):
    if ARRIVALS_LOG:
        with open(ARRIVALS_LOG, "rb") as log:
            log.seek(arrivals_read["offset"])
            new = log.read()
        arrivals_read["offset"] += len(new)
        arrivals_read["lines"] += new.count(b"\n")
        return arrivals_read["lines"]
    return int(requests.get(f"{sink}/count").text)


def wait_for_sink(sink, jobs):
    """A request that fails is not retried by APScheduler: stop waiting once the sink has been quiet for a while."""
    count, quiet_since = 0, time.time()
    while count < jobs and time.time() - quiet_since < QUIET_SECONDS:
        time.sleep(POLL_SECONDS)
        latest = sink_count(sink)
        if latest > count:
            count, quiet_since = latest, time.time()
    return count


def cron(sink, jobs, workers, at_us, zones):
    sched = scheduler(workers)
    for i in range(jobs):
        zone = ZoneInfo(zones[i % len(zones)])
        local = datetime.fromtimestamp(at_us / 1e6, zone)
        sched.add_job(deliver, "cron", hour=local.hour, minute=local.minute, second=local.second, timezone=zone,
                      args=[f"{sink}/hook", f"aps-{i}"], id=f"aps-{i}")
    sched.start()
    while time.time() * 1e6 < at_us:
        time.sleep(POLL_SECONDS)
    count = wait_for_sink(sink, jobs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"delivered": count, "peak_rss_kib": peak}), flush=True)


def burst(sink, jobs, workers):
    sched = scheduler(workers)
    sched.start(paused=True)
    due = datetime.now(timezone.utc) + timedelta(seconds=0.2)
    for i in range(jobs):
        sched.add_job(deliver, "date", run_date=due, args=[f"{sink}/hook", f"aps-{i}"], id=f"aps-{i}")
    while datetime.now(timezone.utc) < due:
        time.sleep(POLL_SECONDS)
    released = time.time()
    sched.resume()
    count = wait_for_sink(sink, jobs)
    print(json.dumps({"released": released, "delivered": count}), flush=True)


def interval(sink, jobs, workers, period, start_us, step_us, end_us):
    sched = scheduler(workers)
    for i in range(jobs):
        start = datetime.fromtimestamp((start_us + i * step_us) / 1e6, timezone.utc)
        sched.add_job(
            deliver,
            "interval",
            seconds=period,
            start_date=start,
            args=[f"{sink}/hook", f"aps-{i}"],
            id=f"aps-{i}",
        )
    sched.start()
    ready = time.time()
    while time.time() * 1e6 < end_us:
        time.sleep(POLL_SECONDS)
    print(json.dumps({"ready": ready}), flush=True)


def main():
    mode, sink, *numbers = sys.argv[1:]
    if mode == "burst":
        jobs, workers = map(int, numbers)
        burst(sink, jobs, workers)
    elif mode == "interval":
        jobs, workers, period, start_us, step_us, end_us = map(int, numbers)
        interval(sink, jobs, workers, period, start_us, step_us, end_us)
    elif mode == "cron":
        jobs, workers, at_us = map(int, numbers[:3])
        cron(sink, jobs, workers, at_us, numbers[3].split(","))
    else:
        sys.exit(__doc__)
    # Do not wait for queued fires: the measurement is over.
    os._exit(0)


if __name__ == "__main__":
    main()
