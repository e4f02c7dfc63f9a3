#!/usr/bin/env bash
# The cron trigger against APScheduler 3.11's CronTrigger, in one run: criterion times benches/cron.rs,
# bench/cron_apscheduler.py times the same expressions, zone and chaining in Python, and this prints each figure
# (nanoseconds per next-fire-time call) and the ratio. Python runs before and after the Rust benchmark and its
# best time counts, so background load does not flatter the ratio.
#
#   bench/cron_compare.sh            (APSCHED_BENCH_PYTHON: a Python with apscheduler==3.11.3 and tzdata)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${APSCHED_BENCH_PYTHON:-/work/venv-aps/bin/python}
criterion_dir=${CARGO_TARGET_DIR:-target}/criterion

before=$("$python" bench/cron_apscheduler.py)
# The profiling profile (release with debug info) is the one bench/run.sh builds: no second optimised build.
cargo bench --profile profiling --locked --bench cron -- --noplot >&2
after=$("$python" bench/cron_apscheduler.py)

python3 - "$criterion_dir" "$before" "$after" <<'REPORT'
import json
import sys

criterion_dir, *runs = sys.argv[1:]
runs = [json.loads(run) for run in runs]
print(f"{'benchmark':40} {'apsched':>12} {'APScheduler ' + runs[0]['apscheduler']:>20} {'ratio':>8}")
for name in (key for key in runs[0] if key != "apscheduler"):
    with open(f"{criterion_dir}/{name}/new/estimates.json") as estimates:
        rust_ns = json.load(estimates)["median"]["point_estimate"]
    python_ns = min(run[name] for run in runs)
    print(f"{name:40} {rust_ns:>9.0f} ns {python_ns:>17.0f} ns {python_ns / rust_ns:>7.0f}x")
REPORT
