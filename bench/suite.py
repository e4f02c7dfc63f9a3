"""The benchmark suite (bench/run.sh runs it): every scenario of issue 7 against its baseline in the same run, on the
same sink, then BENCHMARKS.md and the plots under bench/. Every figure is reported beside its baseline and as a
ratio, so the comparison holds on a noisy machine.

    python bench/suite.py --apsched BIN --tool BIN [--quick] [--postgres URL]
"""

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SINK_PORT = 18700
API_PORT = 18701
# nginx as the sink (the burst against nginx); apsched's replicas take API_PORT and the ports after it.
NGINX_PORT = 18790
# apsched's delivery pool, APScheduler's thread pool and the bare-reqwest loop all get this many workers.
WORKERS = 32
# Loaders and API clients keep this many requests in flight.
CLIENTS = 8
# Bursts per runner; see Suite.burst.
BURST_ROUNDS = 3
START_TIMEOUT = 60
# The peers scenario (bench/peers/): which peers, at which fire rates, over how many seconds each.
PEERS = ["apscheduler4", "graphile-worker", "pg-boss"]
PEER_RATES = [100, 1_000]
PEER_WINDOW = 10
# APScheduler 4 delivers about 65 fires/s here: a 10 000-job burst would take minutes, 1 000 show its rate.
PEER_BURST_JOBS = {"apscheduler4": 1_000}
# A rate a peer's own burst cannot reach is not run (its lateness would only grow with the window); the report says so.
PEER_MAX_RATE = {"apscheduler4": 100}
# Fires due near the window's end get this long to arrive before the peer is stopped.
PEER_DRAIN_US = 2_000_000
# The replicas scenario: how many apsched processes share one PostgreSQL.
REPLICAS = [1, 2, 3]
# The midnight scenario's zones: whole-hour, half-hour and DST-observing offsets.
MIDNIGHT_ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Australia/Sydney"]


def now_us():
    return int(time.time() * 1e6)


def iso(us):
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


def lateness_summary(lateness_ms, due):
    values = sorted(lateness_ms)
    return {
        "due": due,
        "delivered": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": values[-1] if values else float("nan"),
        "values": values,
    }


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Sink:
    def __init__(self, tool, workdir):
        self.url = f"http://127.0.0.1:{SINK_PORT}"
        log = open(workdir / "sink.log", "w")
        self.process = subprocess.Popen([tool, "sink", f"127.0.0.1:{SINK_PORT}"], stderr=log)
        wait_for(lambda: requests.get(f"{self.url}/count", timeout=1).ok, "the sink")

    def count(self):
        return int(requests.get(f"{self.url}/count").text)

    def dump(self):
        """Arrivals since the last dump: (arrival µs, job id, scheduled µs or None)."""
        arrivals = []
        for line in requests.get(f"{self.url}/dump").text.splitlines():
            arrival, job_id, scheduled = line.split(",")
            arrivals.append((int(arrival), job_id, int(scheduled) if scheduled else None))
        return arrivals

    def wait_for(self, count, timeout):
        """One request a second at most: the sink answers as soon as `count` have arrived (polling every few ms took
        CPU from the scheduler under test)."""
        deadline = time.time() + timeout
        while int(requests.get(f"{self.url}/count", params={"at_least": count, "wait_ms": 1000}).text) < count:
            if time.time() > deadline:
                raise RuntimeError(f"the sink got {self.count()} of {count} deliveries in {timeout} s")

    def stop(self):
        self.process.terminate()
        self.process.wait()


class NginxSink:
    """nginx answering 200 to each POST on /hook, each arrival a line of its access log (`$msec` and the
    `apsched-job-id` header): the sink whose ceiling `ab -k -c 32` measures. Same interface as Sink, read from the
    log (arrival times to the millisecond, which nginx's `$msec` gives)."""

    def __init__(self, workdir, port=NGINX_PORT):
        self.url = f"http://127.0.0.1:{port}"
        self.prefix = workdir / "nginx"
        self.prefix.mkdir()
        self.arrivals_log = self.prefix / "arrivals.log"
        self.arrivals_log.touch()
        temp = " ".join(f"{kind}_temp_path {self.prefix / kind};" for kind in ["client_body", "proxy", "fastcgi",
                                                                                "uwsgi", "scgi"])
        config = self.prefix / "nginx.conf"
        config.write_text(f"""
daemon off;
worker_processes auto;
pid {self.prefix / "nginx.pid"};
error_log {self.prefix / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    {temp}
    log_format arrivals '$msec $http_apsched_job_id';
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location /hook {{ access_log {self.arrivals_log} arrivals; return 200; }}
    }}
}}
""")
        log = open(self.prefix / "stderr.log", "w")
        self.process = subprocess.Popen(["nginx", "-p", str(self.prefix), "-c", str(config)], stderr=log)
        wait_for(lambda: requests.post(f"{self.url}/hook", timeout=1).ok, "nginx")
        self.offset = 0
        self.pending = []
        self.dump()

    def read(self):
        """Adds the whole lines written since the last read to `pending`."""
        with open(self.arrivals_log, "rb") as log:
            log.seek(self.offset)
            new = log.read()
        whole = new[: new.rfind(b"\n") + 1]
        self.offset += len(whole)
        for line in whole.decode().splitlines():
            msec, _, job_id = line.partition(" ")
            self.pending.append((round(float(msec) * 1e6), job_id, None))

    def dump(self):
        """Arrivals since the last dump: (arrival µs, job id, None)."""
        self.read()
        arrivals, self.pending = self.pending, []
        return arrivals

    def wait_for(self, count, timeout):
        """Reads what is new in the log every 20 ms: a small file read, not a request to a server sharing the cores
        with the runner under test (which is why Sink.wait_for long-polls)."""
        deadline = time.time() + timeout
        while True:
            self.read()
            if len(self.pending) >= count:
                return
            if time.time() > deadline:
                raise RuntimeError(f"nginx got {len(self.pending)} of {count} deliveries in {timeout} s")
            time.sleep(0.02)

    def stop(self):
        self.process.terminate()
        self.process.wait()


def wait_for(check, what, timeout=START_TIMEOUT):
    deadline = time.time() + timeout
    while True:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout} s")
        time.sleep(0.02)


class Apsched:
    """One `apsched serve` process on a store, with WORKERS delivery workers."""

    def __init__(self, binary, workdir, store, port=API_PORT):
        self.binary, self.workdir, self.store, self.port = binary, workdir, store, port
        self.api = f"http://127.0.0.1:{port}"
        self.config = workdir / f"apsched-{port}.toml"
        self.config.write_text(
            'timezone = "UTC"\n'
            f"[jobstores.default]\ntype = \"{store['type']}\"\n"
            + (f"url = \"{store['url']}\"\n" if store.get("url") else "")
            + f"[executors.default]\nmax_workers = {WORKERS}\n"
        )
        self.process = None

    def start(self):
        log = open(self.workdir / f"apsched-{self.port}.log", "a")
        self.spawned = time.time()
        self.process = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config), "--listen", f"127.0.0.1:{self.port}"], stderr=log
        )
        wait_for(lambda: requests.get(f"{self.api}/healthz", timeout=1).ok, "apsched")
        return self

    def post(self, path, body=None):
        response = requests.post(f"{self.api}{path}", json=body)
        if not response.ok:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self.process = None


def action(sink):
    return {"type": "http", "method": "POST", "url": f"{sink.url}/hook", "json": {}}


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} {command[1]} exited with {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def run_json(command, **kwargs):
    return json.loads(run(command, **kwargs).strip().splitlines()[-1])


class Suite:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.work = Path(tempfile.mkdtemp(prefix="apsched-bench-"))
        self.sink = Sink(args.tool, self.work)
        self.results = {}

    def stores(self):
        stores = [("sqlite", None), ("memory", None)]
        if self.args.postgres:
            stores.append(("postgres", self.args.postgres))
        return stores

    def fresh_store(self, kind, url=None):
        directory = Path(tempfile.mkdtemp(dir=self.work, prefix=f"{kind}-"))
        if kind == "sqlite":
            return directory, {"type": "sqlite", "url": f"sqlite://{directory}/bench.db"}
        if kind == "postgres":
            reset_postgres(url)
            return directory, {"type": "postgres", "url": url}
        return directory, {"type": "memory"}

    # 1. burst -------------------------------------------------------------------------------------------------
    def burst(self):
        """Each runner bursts BURST_ROUNDS times (a fresh store each time) and reports its median round; the limit
        reports its best, as it stands for the fastest the machine allows. One round is a fraction of a second, so
        a single one says more about the machine's neighbours than about the runner."""
        jobs = 500 if self.quick else 10_000
        rounds = 1 if self.quick else BURST_ROUNDS
        figures = {"jobs": jobs, "rounds": rounds}
        limits = []
        for _ in range(rounds):
            limit = run_json([self.args.tool, "limit", f"{self.sink.url}/hook", str(jobs), str(WORKERS)])
            self.sink.wait_for(jobs, 60)
            self.sink.dump()
            limits.append(limit["seconds"])
        figures["limit"] = burst_figures(jobs, limits, best=True)
        for kind, url in self.stores():
            rounds_seconds = []
            for _ in range(rounds):
                rounds_seconds.append(self.burst_round(kind, url, jobs))
            figures[kind] = burst_figures(jobs, rounds_seconds)
        rounds_seconds, delivered = [], []
        # APScheduler's burst is the slowest part of the scenario (about 18 s a round here) and its rounds agree
        # within 1 % (18.43 to 18.48 s on 3 December): one round keeps the suite within its budget.
        for _ in range(1):
            started = self.baseline(["burst", self.sink.url, str(jobs), str(WORKERS)])
            arrivals = self.sink.dump()
            rounds_seconds.append(max(a[0] for a in arrivals) / 1e6 - started["released"])
            # APScheduler does not retry: a request that failed is a fire lost, so its rate counts what arrived.
            delivered.append(len(arrivals))
        figures["apscheduler"] = burst_figures(jobs, rounds_seconds, delivered=delivered)
        self.results["burst"] = figures
        print(f"burst: {json.dumps(figures)}", file=sys.stderr)

    # 1b. the burst against nginx -----------------------------------------------------------------------------
    def nginx(self):
        """The burst of section 1 on PostgreSQL with nginx as the sink, beside what nginx takes from `ab -k -c 32`
        (its ceiling: a C client that only sends) and APScheduler 3, all in this run: the check of issue 16."""
        if not self.args.postgres or not shutil.which("nginx") or not shutil.which("ab"):
            self.results["nginx"] = None
            return
        jobs = 500 if self.quick else 10_000
        rounds = 1 if self.quick else BURST_ROUNDS
        sink = NginxSink(self.work)
        try:
            body = self.work / "body.json"
            body.write_text("{}")
            # ab reports its time to the millisecond, and 10 000 requests take about 0.1 s: it sends five times as
            # many, for a rate to a few per cent.
            requests_sent = 5 * jobs
            ceilings = []
            for _ in range(rounds):
                output = run(["ab", "-q", "-k", "-c", str(WORKERS), "-n", str(requests_sent), "-p", str(body), "-T",
                              "application/json", f"{sink.url}/hook"])
                failed = int(output.split("Failed requests:")[1].split()[0])
                if failed:
                    raise RuntimeError(f"ab: {failed} of {requests_sent} requests failed")
                ceilings.append(requests_sent / float(output.split("Time taken for tests:")[1].split()[0]))
                sink.wait_for(requests_sent, 60)
                sink.dump()
            figures = {"jobs": jobs, "rounds": rounds,
                       "ab": {**burst_figures(jobs, [jobs / rate for rate in ceilings], best=True),
                              "requests": requests_sent},
                       "postgres": burst_figures(jobs, [self.burst_round("postgres", self.args.postgres, jobs, sink)
                                                        for _ in range(rounds)])}
            started = self.baseline(["burst", sink.url, str(jobs), str(WORKERS)],
                                    env={**os.environ, "APSCHED_BENCH_ARRIVALS_LOG": str(sink.arrivals_log)})
            arrivals = sink.dump()
            figures["apscheduler"] = burst_figures(jobs, [max(a[0] for a in arrivals) / 1e6 - started["released"]],
                                                   delivered=[len(arrivals)])
        finally:
            sink.stop()
        self.results["nginx"] = figures
        print(f"nginx: {json.dumps(figures)}", file=sys.stderr)

    def burst_round(self, kind, url, jobs, sink=None):
        """Seconds from releasing `jobs` date jobs due together to the last delivery at `sink` (the suite's own by
        default)."""
        sink = sink or self.sink
        directory, store = self.fresh_store(kind, url)
        server = Apsched(self.args.apsched, directory, store).start()
        server.post("/v1/scheduler/pause")
        due = now_us() + 1_000_000
        template = {"trigger": {"type": "date", "run_date": iso(due)}, "action": action(sink),
                    "misfire_grace_time": None}
        run([self.args.tool, "add-jobs", server.api, json.dumps(template), "burst-", str(jobs), str(CLIENTS)])
        while now_us() < due:
            time.sleep(0.01)
        released = time.time()
        server.post("/v1/scheduler/resume")
        sink.wait_for(jobs, 300)
        arrivals = sink.dump()
        server.stop()
        return max(a[0] for a in arrivals) / 1e6 - released

    def baseline(self, arguments, **kwargs):
        return run_json([self.args.python, str(BENCH / "apscheduler_baseline.py"), *arguments], **kwargs)

    # 2. lateness and 3. idle jobs -----------------------------------------------------------------------------
    def schedule(self, kind, url, active, period, window, idle=0, replicas=1):
        """`active` interval jobs every `period` s spread evenly over it, plus `idle` cron jobs that fire once a
        year and one date job due at start-up; the lateness of fires due in the first `window` seconds."""
        directory, store = self.fresh_store(kind, url)
        server = Apsched(self.args.apsched, directory, store).start()
        server.post("/v1/scheduler/pause")
        step = period * 1_000_000 // active
        bulk = kind != "memory"
        loaded = time.time()
        if bulk:
            # Templates through the API (the interval one's start is fixed below), then the copies in SQL.
            placeholder = {"type": "interval", "seconds": period, "start_date": iso(now_us() + 3_600_000_000)}
            server.post("/v1/jobs", {"id": "template-active", "trigger": placeholder, "action": action(self.sink),
                                     "misfire_grace_time": None})
            if idle:
                server.post("/v1/jobs", {"id": "idle-0", "trigger": {"type": "cron", "month": 1, "day": 1},
                                         "action": action(self.sink), "misfire_grace_time": None})
            server.post("/v1/jobs", {"id": "first", "action": action(self.sink), "misfire_grace_time": None})
            server.stop()
            if idle:
                clone_jobs(store, "idle-0", "idle-", idle)
            start = (now_us() // 1_000_000 + 6 + active // 20_000) * 1_000_000
            clone_jobs(store, "template-active", "active-", active, start, step)
            self.sink.dump()
            server.start()
            others = [Apsched(self.args.apsched, directory, store, API_PORT + i).start() for i in range(1, replicas)]
            self.sink.wait_for(1, 60)
            first_fire = self.sink.dump()[0][0] / 1e6 - server.spawned
        else:
            start = (now_us() // 1_000_000 + 5 + (active + idle) // 5_000) * 1_000_000
            interval = {"type": "interval", "seconds": period, "start_date": iso(start)}
            template = {"trigger": interval, "action": action(self.sink), "misfire_grace_time": None}
            run([self.args.tool, "add-jobs", server.api, json.dumps(template), "active-", str(active), str(CLIENTS),
                 str(start), str(step)])
            if idle:
                template = {"trigger": {"type": "cron", "month": 1, "day": 1}, "action": action(self.sink)}
                run([self.args.tool, "add-jobs", server.api, json.dumps(template), "idle-", str(idle), str(CLIENTS)])
            server.post("/v1/scheduler/resume")
            first_fire = None
        loaded = time.time() - loaded
        if now_us() > start:
            raise RuntimeError(f"loading {active + idle} jobs took {loaded:.1f} s, past the first fire")
        while now_us() < start:
            time.sleep(0.01)
        pid = server.process.pid
        cpu_before = cpu_seconds(pid)
        time.sleep(window)
        cpu = cpu_seconds(pid) - cpu_before
        rss = memory_kib(pid, "VmRSS")
        time.sleep(1.5)
        hwm = memory_kib(pid, "VmHWM")
        server.stop()
        if bulk:
            for other in others:
                other.stop()
        end = start + window * 1_000_000
        arrivals = self.sink.dump()
        lateness = [(a - s) / 1000 for a, _, s in arrivals if s is not None and start <= s < end]
        due = window * active // period
        summary = lateness_summary(lateness, due)
        summary["double_fires"] = double_fires(arrivals)
        summary.update({"cpu_ms_per_fire": cpu * 1000 / max(1, len(lateness)), "rss_mib": rss / 1024,
                        "peak_rss_mib": hwm / 1024, "first_fire_s": first_fire, "load_s": loaded})
        return summary

    def apscheduler_schedule(self, active, period, window):
        step = period * 1_000_000 // active
        margin = 3 + active / 100_000 * 25
        start = (now_us() // 1_000_000 + int(margin) + 2) * 1_000_000
        end = start + window * 1_000_000
        self.sink.dump()
        ready = self.baseline(["interval", self.sink.url, str(active), str(WORKERS), str(period), str(start),
                               str(step), str(end + 1_500_000)])["ready"]
        if ready * 1e6 > start:
            raise RuntimeError(f"APScheduler took until {ready - start / 1e6:.1f} s past the first fire to start")
        seen = {}
        lateness = []
        for arrival, job_id, _ in sorted(self.sink.dump()):
            i = int(job_id.removeprefix("aps-"))
            k = seen.get(i, 0)
            seen[i] = k + 1
            scheduled = start + i * step + k * period * 1_000_000
            if scheduled < end:
                lateness.append((arrival - scheduled) / 1000)
        return lateness_summary(lateness, window * active // period)

    def lateness(self):
        sizes = [(200, 5, 3)] if self.quick else [(1_000, 10, 10), (100_000, 100, 10)]
        figures = {}
        for active, period, window in sizes:
            row = {"period_s": period, "window_s": window}
            for kind, url in self.stores():
                if kind == "memory" and active > 1_000:
                    continue
                row[kind] = self.schedule(kind, url, active, period, window)
                print(f"lateness {active} {kind}: {summarise(row[kind])}", file=sys.stderr)
            row["apscheduler"] = self.apscheduler_schedule(active, period, window)
            print(f"lateness {active} apscheduler: {summarise(row['apscheduler'])}", file=sys.stderr)
            figures[active] = row
        self.results["lateness"] = figures

    def idle(self):
        active, period, window = (200, 5, 3) if self.quick else (1_000, 10, 10)
        totals = [1_000, 10_000] if self.quick else [1_000, 1_000_000]
        figures = {"active": active, "period_s": period, "window_s": window}
        kinds = [(kind, url) for kind, url in self.stores() if kind != "memory"]
        # Without idle jobs the run is the lateness scenario's own (same jobs, period and window): its figures are
        # taken rather than measured twice, which keeps the suite within its 15 minutes.
        same = (self.results.get("lateness") or {}).get(active) or {}
        if (same.get("period_s"), same.get("window_s")) != (period, window):
            same = {}
        for kind, url in kinds:
            figures[kind] = {}
            for total in totals:
                if total == active and kind in same:
                    figures[kind][total] = same[kind]
                    continue
                summary = self.schedule(kind, url, active, period, window, idle=total - active)
                figures[kind][total] = summary
                print(f"idle {total} {kind}: {summarise(summary)}", file=sys.stderr)
        self.results["idle"] = figures

    # 4. API -----------------------------------------------------------------------------------------------------
    def api(self):
        jobs = 500 if self.quick else 5_000
        figures = {"jobs": jobs}
        for kind, url in self.stores():
            directory, store = self.fresh_store(kind, url)
            server = Apsched(self.args.apsched, directory, store).start()
            template = {"trigger": {"type": "cron", "month": 1, "day": 1}, "action": action(self.sink)}
            server.post("/v1/jobs", dict(template, id="template"))
            added = run_json([self.args.tool, "add-jobs", server.api, json.dumps(template), "api-", str(jobs),
                              str(CLIENTS)])
            server.stop()
            row = {"api_per_second": added["per_second"]}
            if kind != "memory":
                raw = run_json([self.args.tool, "insert-rate", store["url"], "template", "raw-", str(jobs),
                                str(CLIENTS)])
                row["insert_per_second"] = raw["per_second"]
            figures[kind] = row
        self.results["api"] = figures
        print(f"api: {json.dumps(figures)}", file=sys.stderr)

    # 4b. bulk changes -----------------------------------------------------------------------------------------
    def bulk(self):
        """Bulk changes by selector over `jobs` labelled jobs through the API (pause all, resume all, remove all),
        each beside the same rows changed by one raw statement in the same database: what the database itself
        takes for it."""
        jobs = 2_000 if self.quick else 100_000
        figures = {"jobs": jobs}
        for kind, url in self.stores():
            if kind == "memory":
                continue
            directory, store = self.fresh_store(kind, url)
            server = Apsched(self.args.apsched, directory, store).start()
            server.post("/v1/scheduler/pause")
            template = {"id": "bulk-0", "trigger": {"type": "cron", "month": 1, "day": 1},
                        "action": action(self.sink), "labels": {"fleet": "a"}}
            server.post("/v1/jobs", template)
            clone_jobs(store, "bulk-0", "bulk-", jobs, labels=True)
            row = {}
            # Raw: the rows a bulk pause and resume write, as one UPDATE each (no trigger arithmetic).
            row["raw_pause_s"] = timed(lambda: raw_sql(store, "UPDATE jobs SET paused = {true}, "
                                                              "next_run_time = NULL, updated_at = created_at"))
            row["raw_resume_s"] = timed(lambda: raw_sql(store, "UPDATE jobs SET paused = {false}, "
                                                               "next_run_time = created_at, updated_at = created_at"))
            selector = {"selector": "fleet=a"}
            for step, paused in [("pause", True), ("resume", False)]:
                def change():
                    response = requests.patch(f"{server.api}/v1/jobs", params=selector, json={"paused": paused})
                    if response.json().get("modified") != jobs:
                        raise RuntimeError(f"bulk {step}: {response.status_code} {response.text}")
                row[f"api_{step}_s"] = timed(change)

            def remove():
                response = requests.delete(f"{server.api}/v1/jobs", params=selector)
                if response.json().get("removed") != jobs:
                    raise RuntimeError(f"bulk remove: {response.status_code} {response.text}")
            row["api_remove_s"] = timed(remove)
            server.post("/v1/jobs", template)
            clone_jobs(store, "bulk-0", "bulk-", jobs, labels=True)
            row["raw_remove_s"] = timed(lambda: raw_sql(store, "DELETE FROM jobs"))
            server.stop()
            figures[kind] = row
            print(f"bulk {kind}: {json.dumps(row)}", file=sys.stderr)
        self.results["bulk"] = figures

    # 6. peers --------------------------------------------------------------------------------------------------
    def peers(self):
        """APScheduler 4, graphile-worker and pg-boss on the same PostgreSQL and sink as apsched (bench/peers/): the
        burst, and lateness at 100 and 1 000 fires/s, each beside apsched on PostgreSQL in this run."""
        if not self.args.postgres or not self.args.node_peers:
            self.results["peers"] = None
            return
        url = self.args.postgres
        figures = {"rates": {}, "burst": {}}
        for peer in PEERS:
            jobs = min(PEER_BURST_JOBS.get(peer, 10_000), 500 if self.quick else 10_000)
            figures["burst"][peer] = self.peer_burst(peer, url, jobs)
            print(f"peers burst {peer}: {json.dumps(figures['burst'][peer])}", file=sys.stderr)
        figures["burst"]["apsched"] = (self.results.get("burst") or {}).get("postgres")
        if figures["burst"]["apsched"] is None:
            jobs = 500 if self.quick else 10_000
            figures["burst"]["apsched"] = burst_figures(jobs, [self.burst_round("postgres", url, jobs)])
        for rate in [50] if self.quick else PEER_RATES:
            window = 3 if self.quick else PEER_WINDOW
            row = {"window_s": window}
            for peer in PEERS:
                ceiling = PEER_MAX_RATE.get(peer)
                if ceiling is not None and rate > ceiling:
                    row[peer] = {"not_run": f"its burst rate here is under {ceiling} fires/s"}
                    continue
                row[peer] = self.peer_spread(peer, url, rate, window)
                print(f"peers lateness {rate}/s {peer}: {summarise(row[peer])}", file=sys.stderr)
            # apsched on the same PostgreSQL: interval jobs at the same fire rate (period 10 s).
            row["apsched"] = self.schedule("postgres", url, rate * 10, 10, window)
            print(f"peers lateness {rate}/s apsched: {summarise(row['apsched'])}", file=sys.stderr)
            figures["rates"][rate] = row
        self.results["peers"] = figures

    def peer_command(self, peer, *arguments):
        if peer == "apscheduler4":
            return [self.args.peer_python, str(BENCH / "peers" / "apscheduler4_peer.py"), *arguments]
        return ["node", str(Path(self.args.node_peers) / "node_peer.js"), peer, *arguments]

    def start_peer(self, peer, url, *arguments):
        reset_postgres(url)
        log = open(self.work / f"{peer}.log", "a")
        process = subprocess.Popen(self.peer_command(peer, *arguments), stdout=subprocess.PIPE, stderr=log,
                                   text=True)
        line = process.stdout.readline()
        if not line:
            process.wait()
            raise RuntimeError(f"{peer} exited with {process.returncode}; see {self.work / (peer + '.log')}")
        return process, json.loads(line)

    def peer_burst(self, peer, url, jobs):
        self.sink.dump()
        process, started = self.start_peer(peer, url, "burst", url, self.sink.url, str(jobs), str(WORKERS))
        try:
            self.sink.wait_for(jobs, 600)
        finally:
            process.kill()
            process.wait()
        arrivals = self.sink.dump()
        return burst_figures(jobs, [max(a[0] for a in arrivals) / 1e6 - started["released"]])

    def peer_spread(self, peer, url, rate, window):
        count = rate * window
        step = 1_000_000 // rate
        # Loading is not measured; the first fire comes after it (APScheduler 4 adds about 100 schedules/s here).
        margin = 5 + count / (100 if peer == "apscheduler4" else 2_000)
        start = (now_us() // 1_000_000 + int(margin) + 1) * 1_000_000
        end = start + window * 1_000_000
        self.sink.dump()
        process, ready = self.start_peer(peer, url, "spread", url, self.sink.url, str(count), str(WORKERS),
                                         str(start), str(step))
        try:
            if ready["ready"] * 1e6 > start:
                raise RuntimeError(f"{peer} took until {ready['ready'] - start / 1e6:.1f} s past the first fire")
            while now_us() < end + PEER_DRAIN_US:
                time.sleep(0.05)
        finally:
            process.kill()
            process.wait()
        lateness = [(a - s) / 1000 for a, _, s in self.sink.dump() if s is not None and start <= s < end]
        return lateness_summary(lateness, count)

    # 7. replicas -----------------------------------------------------------------------------------------------
    def replicas(self):
        """1, 2 and 3 apsched processes on one PostgreSQL: the burst and lateness at 1 000 fires/s, with the sink
        counting fires delivered twice."""
        if not self.args.postgres:
            self.results["replicas"] = None
            return
        url = self.args.postgres
        jobs = 500 if self.quick else 10_000
        active, period, window = (500, 5, 3) if self.quick else (10_000, 10, 10)
        figures = {"jobs": jobs, "active": active, "period_s": period, "window_s": window}
        for count in REPLICAS:
            seconds, doubles = self.replica_burst(url, jobs, count)
            row = {"burst": burst_figures(jobs, [seconds]), "burst_double_fires": doubles}
            row["lateness"] = self.schedule("postgres", url, active, period, window, replicas=count)
            print(f"replicas {count}: burst {seconds:.3f} s ({doubles} double), lateness "
                  f"{summarise(row['lateness'])}", file=sys.stderr)
            figures[count] = row
        self.results["replicas"] = figures

    def replica_burst(self, url, jobs, count):
        """`jobs` date jobs due together, added through the first of `count` replicas while all are paused, then
        released by resuming every replica: seconds from the release to the last delivery, and how many fires
        arrived twice. (A lead sized from the add rate crashed when adds beside other replicas ran slower.)"""
        directory, store = self.fresh_store("postgres", url)
        servers = [Apsched(self.args.apsched, directory, store, API_PORT + i).start() for i in range(count)]
        self.sink.dump()
        try:
            for server in servers:
                server.post("/v1/scheduler/pause")
            due = now_us() + 1_000_000
            template = {"trigger": {"type": "date", "run_date": iso(due)}, "action": action(self.sink),
                        "misfire_grace_time": None}
            run([self.args.tool, "add-jobs", servers[0].api, json.dumps(template), "burst-", str(jobs),
                 str(CLIENTS)])
            while now_us() < due:
                time.sleep(0.01)
            released = time.time()
            for server in servers:
                server.post("/v1/scheduler/resume")
            self.sink.wait_for(jobs, 300)
            # Let any second delivery of a fire arrive before counting (a double fire from a race between
            # replicas would come within milliseconds of the first).
            time.sleep(1)
        finally:
            for server in servers:
                server.stop()
        arrivals = self.sink.dump()
        return max(a[0] for a in arrivals) / 1e6 - released, double_fires(arrivals)

    # 8. midnight -----------------------------------------------------------------------------------------------
    def midnight(self):
        """A daily burst: cron jobs in several zones whose wall-clock time comes at the same instant (as `0 0 * * *`
        in each zone does at its midnight; the instant is chosen a few seconds ahead instead of waiting for one),
        on SQLite, PostgreSQL and APScheduler 3: time from that instant to the last delivery, and peak RSS."""
        jobs = 1_000 if self.quick else 100_000
        figures = {"jobs": jobs, "zones": MIDNIGHT_ZONES}
        for kind, url in self.stores():
            if kind == "memory":
                continue
            figures[kind] = self.midnight_apsched(kind, url, jobs)
            print(f"midnight {kind}: {json.dumps(figures[kind])}", file=sys.stderr)
        at = (now_us() // 1_000_000 + 8 + jobs // 4_000) * 1_000_000
        self.sink.dump()
        result = self.baseline(["cron", self.sink.url, str(jobs), str(WORKERS), str(at), ",".join(MIDNIGHT_ZONES)])
        arrivals = self.sink.dump()
        figures["apscheduler"] = {"seconds": max(a[0] for a in arrivals) / 1e6 - at / 1e6,
                                  "delivered": len(arrivals), "peak_rss_mib": result["peak_rss_kib"] / 1024}
        print(f"midnight apscheduler: {json.dumps(figures['apscheduler'])}", file=sys.stderr)
        self.results["midnight"] = figures

    def midnight_apsched(self, kind, url, jobs):
        directory, store = self.fresh_store(kind, url)
        server = Apsched(self.args.apsched, directory, store).start()
        at = (now_us() // 1_000_000 + 6 + jobs // 10_000) * 1_000_000
        for zone in MIDNIGHT_ZONES:
            local = datetime.fromtimestamp(at / 1e6, ZoneInfo(zone))
            trigger = {"type": "cron", "hour": local.hour, "minute": local.minute, "second": local.second,
                       "timezone": zone}
            server.post("/v1/jobs", {"id": f"midnight-{zone.replace('/', '.')}", "trigger": trigger,
                                     "action": action(self.sink), "misfire_grace_time": None})
        server.stop()
        share = jobs // len(MIDNIGHT_ZONES)
        for zone in MIDNIGHT_ZONES:
            name = zone.replace("/", ".")
            clone_jobs(store, f"midnight-{name}", f"midnight-{name}-", share)
        self.sink.dump()
        server.start()
        if now_us() > at:
            raise RuntimeError(f"loading {jobs} cron jobs took past the instant they fire")
        self.sink.wait_for(share * len(MIDNIGHT_ZONES), 600)
        hwm = memory_kib(server.process.pid, "VmHWM")
        arrivals = self.sink.dump()
        server.stop()
        return {"seconds": max(a[0] for a in arrivals) / 1e6 - at / 1e6, "delivered": len(arrivals),
                "double_fires": double_fires(arrivals), "peak_rss_mib": hwm / 1024}

    # 5. cron arithmetic ---------------------------------------------------------------------------------------
    def cron(self):
        if self.quick:
            self.results["cron"] = None
            return
        env = dict(os.environ, APSCHED_BENCH_PYTHON=self.args.python)
        output = run([str(BENCH / "cron_compare.sh")], cwd=ROOT, env=env)
        rows = []
        for line in output.splitlines()[1:]:
            name, rust, _, python, _, ratio = line.split()
            rows.append({"name": name, "apsched_ns": float(rust), "apscheduler_ns": float(python),
                         "ratio": float(ratio.rstrip("x"))})
        self.results["cron"] = rows

    def close(self):
        self.sink.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def burst_figures(jobs, rounds_seconds, best=False, delivered=None):
    """The median round (the best with `best`), its rate counting `delivered[i]` fires of round i if given."""
    delivered = delivered or [jobs] * len(rounds_seconds)
    rates = [count / seconds for count, seconds in zip(delivered, rounds_seconds)]
    chosen = rates.index(max(rates)) if best else rates.index(statistics.median_low(rates))
    return {"seconds": rounds_seconds[chosen], "per_second": rates[chosen], "rounds_seconds": rounds_seconds,
            "delivered": delivered}


def double_fires(arrivals):
    """Fires that reached the sink more than once: the same job and scheduled time (the job id where the scheduled
    time is not sent)."""
    fires = [(job_id, scheduled) for _, job_id, scheduled in arrivals]
    return len(fires) - len(set(fires))


def summarise(summary):
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items() if k != "values"}


def timed(step):
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def raw_sql(store, statement):
    """One statement, `{true}`/`{false}` spelled as the store's dialect spells them, in its own transaction."""
    truth = {"true": "1", "false": "0"} if store["type"] == "sqlite" else {"true": "true", "false": "false"}
    sql = statement.format(**truth)
    if store["type"] == "sqlite":
        db = sqlite3.connect(store["url"].removeprefix("sqlite://"), timeout=30)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(f"BEGIN; {sql}; COMMIT;")
        db.close()
    else:
        run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-1", store["url"], "-c", sql])


def clone_jobs(store, template_id, prefix, count, start_us=None, step_us=None, labels=False):
    """Bulk-load copies of a job the API stored, differing only in id: `prefix`1 … `prefix`(count − 1) beside the
    template; or, for an interval template (`start_us` given), `prefix`0 … `prefix`(count − 1) replacing it, job i
    with start_date and next_run_time start_us + i × step_us, written as the API writes them (RFC 3339, UTC,
    fractional seconds only when there are any). Exactly the rows the API would have stored, at the database's
    own speed. With `labels`, the copies have the template's labels, in the job and in the label index."""
    spread = start_us is not None
    first = 0 if spread else 1
    columns = ("name, {trigger}, action, coalesce, max_instances, misfire_grace_time, executor, jobstore, "
               "{next_run_time}, paused, created_at, updated_at" + (", labels" if labels else ""))
    label_rows = (f"INSERT INTO job_labels (job_id, key, value) SELECT jobs.id, l.key, l.value FROM jobs, job_labels l "
                  f"WHERE l.job_id = '{template_id}' AND jobs.id LIKE '{prefix}%' AND jobs.id <> '{template_id}';"
                  if labels else "")
    names = columns.format(trigger="trigger", next_run_time="next_run_time")
    if store["type"] == "sqlite":
        text = ("strftime('%Y-%m-%dT%H:%M:%S', t / 1000000, 'unixepoch') || CASE WHEN t % 1000000 = 0 THEN '' "
                "WHEN t % 1000 = 0 THEN printf('.%03d', t / 1000 % 1000) ELSE printf('.%06d', t % 1000000) END "
                "|| '+00:00'")
        values = columns.format(trigger=f"json_set(trigger, '$.start_date', {text})" if spread else "trigger",
                                next_run_time="t" if spread else "next_run_time")
        sql = f"""
            WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {count}),
                 times(i, t) AS (SELECT i, {start_us or 0} + i * {step_us or 0} FROM n)
            INSERT INTO jobs (id, {names})
            SELECT '{prefix}' || times.i, {values} FROM jobs, times WHERE jobs.id = '{template_id}';
        """
        if spread:
            sql += f"DELETE FROM jobs WHERE id = '{template_id}';"
        sql += label_rows
        db = sqlite3.connect(store["url"].removeprefix("sqlite://"))
        db.executescript(f"BEGIN; {sql} COMMIT;")
        db.close()
    elif store["type"] == "postgres":
        at = "('epoch'::timestamptz + t * interval '1 microsecond')"
        text = (f"to_char({at} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN t % 1000000 = 0 "
                "THEN '' WHEN t % 1000 = 0 THEN '.' || lpad((t / 1000 % 1000)::text, 3, '0') "
                "ELSE '.' || lpad((t % 1000000)::text, 6, '0') END || '+00:00'")
        values = columns.format(trigger=f"jsonb_set(trigger, '{{start_date}}', to_jsonb({text}))" if spread
                                else "trigger", next_run_time=at if spread else "next_run_time")
        sql = f"""
            INSERT INTO jobs (id, {names})
            SELECT '{prefix}' || i, {values}
            FROM jobs, generate_series({first}, {count - 1}) AS i,
                 LATERAL (SELECT {start_us or 0}::bigint + i * {step_us or 0}::bigint AS t) AS times
            WHERE jobs.id = '{template_id}';
        """
        if spread:
            sql += f"DELETE FROM jobs WHERE id = '{template_id}';"
        sql += label_rows
        run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-1", store["url"], "-c", sql])
        run(["psql", "-q", store["url"], "-c", "VACUUM ANALYZE jobs, job_labels"])
    else:
        raise RuntimeError(f"cannot bulk-load a {store['type']} store")


def reset_postgres(url):
    """Drop and recreate the benchmark database named in `url` (never the one the tests use)."""
    base, name = url.rsplit("/", 1)
    name = name.split("?")[0]
    if name in ("postgres", "test"):
        raise RuntimeError(f"refusing to reset database {name!r}: give the suite its own (e.g. apsched_bench)")
    run(["psql", "-q", f"{base}/postgres", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"])
    run(["psql", "-q", f"{base}/postgres", "-c", f"CREATE DATABASE {name}"])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apsched", required=True)
    parser.add_argument("--tool", required=True)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres")
    parser.add_argument("--peer-python", default=sys.executable, help="a Python with APScheduler 4, asyncpg, aiohttp")
    parser.add_argument("--node-peers", help="a directory with node_peer.js and its node_modules (bench/run.sh)")
    parser.add_argument("--only", nargs="*", default=["burst", "nginx", "lateness", "idle", "api", "bulk", "cron", "peers", "replicas", "midnight"])
    parser.add_argument("--results", default=str(BENCH / "results.json"))
    parser.add_argument("--merge", action="store_true",
                        help="keep the other scenarios' results already in --results (a partial rerun)")
    args = parser.parse_args()
    suite = Suite(args)
    started = time.time()
    # How long each scenario took, to keep the whole run within its budget.
    scenario_seconds = {}
    failed = None
    try:
        for scenario in args.only:
            print(f"== {scenario}", file=sys.stderr)
            began = time.time()
            getattr(suite, scenario)()
            scenario_seconds[scenario] = round(time.time() - began, 1)
            print(f"== {scenario}: {scenario_seconds[scenario]} s", file=sys.stderr)
    except Exception as err:  # noqa: BLE001  (the scenarios done so far are written, then the run fails)
        failed = err
        print(f"== {scenario} failed: {err}; writing the scenarios done so far", file=sys.stderr)
    finally:
        suite.close()
    suite.results["meta"] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "seconds": time.time() - started,
        "scenario_seconds": scenario_seconds,
        "workers": WORKERS,
        "clients": CLIENTS,
        "machine": machine(),
    }
    if args.merge and Path(args.results).exists():
        kept = json.loads(Path(args.results).read_text())
        kept.setdefault("meta", {}).setdefault("partial_runs", []).append(
            {"scenarios": args.only, **suite.results["meta"]})
        suite.results = {**kept, **{k: v for k, v in suite.results.items() if k != "meta"}, "meta": kept["meta"]}
    Path(args.results).write_text(json.dumps(suite.results, indent=1))
    print(f"results in {args.results} after {time.time() - started:.0f} s", file=sys.stderr)
    if failed is not None:
        raise failed


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(int(memory) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


if __name__ == "__main__":
    main()
