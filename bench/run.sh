#!/usr/bin/env bash
# The benchmark suite in one command: builds apsched and the bench tools (bench/tools/bench.rs), sets up a virtualenv
# with APScheduler 3.11.3 outside the repository, runs every scenario against its baselines on one sink (and the
# burst once more against nginx, with ApacheBench for its ceiling), and writes BENCHMARKS.md and the plots under
# bench/.
#
#   bench/run.sh            the full suite, profiling build (release with debug info; about 10 minutes on 2 cores)
#   bench/run.sh --quick    small sizes on a debug build, to keep the scripts working (CI); writes to a scratch
#                           directory instead of BENCHMARKS.md
#
# Environment: APSCHED_BENCH_VENV (default ~/.cache/apsched-bench-venv); APSCHED_BENCH_POSTGRES, a PostgreSQL URL on
# 127.0.0.1 whose database the suite drops and recreates (default postgres://postgres@127.0.0.1:5432/apsched_bench
# when a server answers there; set it empty to skip the PostgreSQL scenarios).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
profile=profiling
if [[ "${1:-}" == "--quick" ]]; then
  quick="--quick"
  profile=debug
fi

venv=${APSCHED_BENCH_VENV:-$HOME/.cache/apsched-bench-venv}
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import apscheduler, requests, matplotlib, tzdata' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check apscheduler==3.11.3 requests matplotlib tzdata
fi

# The peers (bench/peers/), installed from the registries outside the repository: APScheduler 4 in its own
# virtualenv (it cannot share one with APScheduler 3), graphile-worker and pg-boss from package-lock.json.
venv4=${APSCHED_BENCH_VENV4:-$HOME/.cache/apsched-bench-venv4}
if [[ ! -x "$venv4/bin/python" ]] || ! "$venv4/bin/python" -c 'import apscheduler, asyncpg, aiohttp, sniffio, greenlet' 2>/dev/null; then
  python3 -m venv "$venv4"
  "$venv4/bin/pip" install --quiet --disable-pip-version-check apscheduler==4.0.0a6 asyncpg aiohttp sniffio \
    'sqlalchemy[asyncio]>=2.0,<2.1'
fi
node_peers=${APSCHED_BENCH_NODE:-$HOME/.cache/apsched-bench-node}
mkdir -p "$node_peers"
if ! cmp -s bench/peers/package-lock.json "$node_peers/package-lock.json" || [[ ! -d "$node_peers/node_modules" ]]; then
  cp bench/peers/package.json bench/peers/package-lock.json "$node_peers/"
  (cd "$node_peers" && npm ci --silent --no-audit --no-fund)
fi
cp bench/peers/node_peer.js "$node_peers/"

# nginx as a sink and ApacheBench for its ceiling (the burst against nginx), from Debian's packages. RUNLEVEL=1
# keeps the package from starting a system nginx on port 80: the suite runs its own on 127.0.0.1.
if ! command -v nginx > /dev/null || ! command -v ab > /dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  RUNLEVEL=1 apt-get install -y -qq nginx-light apache2-utils > /dev/null 2>&1 \
    || { apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq nginx-light apache2-utils > /dev/null; }
fi

target=${CARGO_TARGET_DIR:-target}
# The debug build's directory is target/debug although its profile is called `dev`.
if [[ "$profile" == profiling ]]; then
  cargo build --profile profiling --locked --bin apsched --example bench --bench cron >&2
else
  cargo build --locked --bin apsched --example bench >&2
fi

# PostgreSQL scenarios run when a server answers on 127.0.0.1:5432 (CI starts one for the tests).
if [[ -z "${APSCHED_BENCH_POSTGRES+set}" ]] && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  APSCHED_BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/apsched_bench
fi
postgres=()
if [[ -n "${APSCHED_BENCH_POSTGRES:-}" ]]; then
  postgres=(--postgres "$APSCHED_BENCH_POSTGRES")
fi

if [[ -n "$quick" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
else
  out=bench
fi

"$venv/bin/python" bench/suite.py $quick "${postgres[@]}" --peer-python "$venv4/bin/python" --node-peers "$node_peers" \
  --apsched "$target/$profile/apsched" --tool "$target/$profile/examples/bench" --results "$out/results.json"
"$venv/bin/python" bench/report.py "$out/results.json" --markdown "$out/BENCHMARKS.md" --plots "$out"
if [[ -z "$quick" ]]; then
  mv bench/BENCHMARKS.md BENCHMARKS.md
fi
echo "report: $out/BENCHMARKS.md" >&2
