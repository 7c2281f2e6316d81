#!/usr/bin/env bash
# The run queue across processes (docs/benchmarks.md, "Run queue"): 10,000 tiny background
# runs through 1 and 2 workers, create-to-start latency with polling, LISTEN and Redis,
# and Redis commands per idle hour. Uses the local Postgres + PgBouncer and Redis that
# scripts/postgres.sh and scripts/redis.sh start, and the server tests' virtualenv.
#
#   scripts/bench-queue.sh [throughput] [latency] [idle]   # RUNS=10000 SAMPLES=300; all three by default
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
eval "$(scripts/postgres.sh)"
eval "$(scripts/redis.sh)"
export DATABASE_URL DATABASE_POOLER_URL REDIS_URL
VENV="$HOME/.cache/brainops/server-tests-sdk-0.4.14"
if [ ! -x "$VENV/bin/python" ]; then
  echo "run scripts/server-tests.sh once first (it makes the virtualenv with httpx)" >&2
  exit 2
fi
cargo build --release --locked --bin brainops >&2
export BRAINOPS_BIN="$CARGO_TARGET_DIR/release/brainops"
exec "$VENV/bin/python" benches/server/run_queue.py "$@"
