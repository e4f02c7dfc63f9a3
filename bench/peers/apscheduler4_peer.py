"""APScheduler 4 as a peer of bench/suite.py: an AsyncScheduler with its SQLAlchemy data store on PostgreSQL through
asyncpg (its fastest durable setup), delivering to the same sink as apsched with a keep-alive aiohttp session and the
`apsched-job-id` and `apsched-scheduled-time` headers apsched sends. Each fire is a schedule with a DateTrigger, as
graphile-worker and pg-boss get one job per fire. The task allows WORKERS jobs at once (APScheduler 4 runs one job
per task at a time by default), misfire grace is unlimited.

    python apscheduler4_peer.py burst PG_URL SINK JOBS WORKERS
        JOBS schedules due now, added before the scheduler runs; then it starts and prints
        {"released": unix seconds when it started}, and runs until killed.
    python apscheduler4_peer.py spread PG_URL SINK COUNT WORKERS START_US STEP_US
        COUNT schedules, schedule i due at START_US + i * STEP_US; prints {"ready": unix seconds when running}.
"""

import asyncio
import json
import sys
import time
from datetime import datetime, timezone

import aiohttp
from apscheduler import AsyncScheduler
from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
from sqlalchemy.ext.asyncio import create_async_engine

TASK = "hook"
# Schedules added concurrently while loading (loading is not measured).
LOAD_CONCURRENCY = 32

state = {}


async def deliver(job_id: str, scheduled: str) -> None:
    headers = {"apsched-job-id": job_id, "apsched-scheduled-time": scheduled}
    async with state["session"].post(state["url"], json={}, headers=headers) as response:
        response.raise_for_status()


async def main():
    mode, pg_url, sink, *numbers = sys.argv[1:]
    jobs, workers, *spread = map(int, numbers)
    if mode == "burst":
        now = int(time.time() * 1e6)
        due = [now] * jobs
    else:
        start_us, step_us = spread
        due = [start_us + i * step_us for i in range(jobs)]
    engine = create_async_engine(pg_url.replace("postgres://", "postgresql+asyncpg://", 1), pool_size=workers)
    state["url"] = f"{sink}/hook"
    state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=workers))
    from apscheduler.triggers.date import DateTrigger

    async with AsyncScheduler(SQLAlchemyDataStore(engine), max_concurrent_jobs=workers) as scheduler:
        await scheduler.configure_task(TASK, func=deliver, max_running_jobs=workers, misfire_grace_time=None)
        semaphore = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def add(i, us):
            at = datetime.fromtimestamp(us / 1e6, timezone.utc)
            async with semaphore:
                await scheduler.add_schedule(TASK, DateTrigger(at), id=f"peer-{i}",
                                             args=[f"peer-{i}", at.isoformat()], misfire_grace_time=None)

        await asyncio.gather(*(add(i, us) for i, us in enumerate(due)))
        started = time.time()
        await scheduler.start_in_background()
        print(json.dumps({"released": started} if mode == "burst" else {"ready": started}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
