#!/usr/bin/env bash
# The agent server beside LangGraph's own (langgraph-api via `langgraph dev`, in memory),
# serving the same small graph, measured the same way in one run:
#   - POST /runs/wait throughput at 1, 8 and 64 concurrent clients (wrk, 10 s each);
#   - time from run creation to the first SSE event (200 streams, p50 and p99);
#   - resident memory of the server with 1,000 idle SSE streams open.
#
#   scripts/compare-langgraph-server.sh            # STREAMS=1000 DURATION=10s
#   SKIP_REFERENCE=1 scripts/compare-langgraph-server.sh   # ours only
#
# The reference server is installed, pinned, into a virtualenv under $HOME/.cache/brainops
# (never committed); it runs offline with no key. Ours runs with its default embedded
# SQLite store (durable) and again with --checkpoint memory (like the reference's in-memory
# runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
CLI_VERSION=0.4.40
LANGGRAPH_VERSION=1.2.24
VENV="$HOME/.cache/brainops/langgraph-cli-$CLI_VERSION"
STREAMS="${STREAMS:-1000}"
DURATION="${DURATION:-10s}"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
need=()
command -v wrk >/dev/null || need+=(wrk)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
if [ ! -x "$VENV/bin/langgraph" ] || ! "$VENV/bin/python" -c 'import langgraph_api, httpx' 2>/dev/null; then
  echo "==> langgraph-cli[inmem] $CLI_VERSION into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "langgraph-cli[inmem]==$CLI_VERSION" "langgraph==$LANGGRAPH_VERSION" httpx >&2
fi
cargo build --release --locked --bin brainops >&2
BIN="$CARGO_TARGET_DIR/release/brainops"
ulimit -n 65536 2>/dev/null || ulimit -n 4096

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() {
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$1/ok" >/dev/null && return 0
    sleep 0.1
  done
  echo "server on port $1 never answered /ok:" >&2; cat "$WORK"/*.log >&2 || true
  return 1
}
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

measure() { # name port pid
  local name=$1 port=$2 pid=$3
  # Memory first, on the fresh server; then throughput.
  local m
  m=$("$VENV/bin/python" benches/server/measure.py "http://127.0.0.1:$port" "$pid" "$STREAMS")
  echo "$name measures $m"
  for c in 1 8 64; do
    local t=$(( c < 2 ? 1 : 2 ))
    local rps
    rps=$(wrk -t"$t" -c"$c" -d"$DURATION" -s benches/server/wait.lua "http://127.0.0.1:$port/runs/wait" | awk '/Requests\/sec/ {print $2}')
    echo "$name wait_rps_c$c $rps"
  done
}

touch "$WORK/results"
if [ -z "${SKIP_REFERENCE:-}" ]; then
  echo "==> LangGraph's server (langgraph-api, langgraph dev --no-reload)" >&2
  P=$(free_port)
  (cd benches/server && exec "$VENV/bin/langgraph" dev --port "$P" --no-browser --no-reload --n-jobs-per-worker 64 >"$WORK/ref.log" 2>&1) &
  PIDS+=($!)
  wait_ok "$P"
  REF_PID=$(pgrep -f "langgraph dev --port $P" | head -n1)
  measure langgraph "$P" "$REF_PID" | tee -a "$WORK/results"
  kill "${PIDS[-1]}" 2>/dev/null || true
fi

for store in sqlite memory; do
  echo "==> brainops serve ($store)" >&2
  P=$(free_port)
  if [ "$store" = sqlite ]; then CP="sqlite:$WORK/threads.db"; else CP=memory; fi
  "$BIN" --agent-dir tests/server/agents serve --graphs tests/server/graphs --port "$P" --checkpoint "$CP" --max-concurrent-runs 64 >"$WORK/ours.log" 2>&1 &
  PIDS+=($!)
  wait_ok "$P"
  measure "brainops-$store" "$P" "${PIDS[-1]}" | tee -a "$WORK/results"
  kill "${PIDS[-1]}" 2>/dev/null || true
done
echo
echo "== results"
cat "$WORK/results"
