#!/usr/bin/env bash
# The yardstick: runs the executor benchmark's graph shapes (a chain, a loop, a fan-out, a big
# object, and the multi-agent supervisor_1000_handoffs and map_1000_subgraphs) in LangGraph (Python) and in
# this engine, each without checkpoints, with the in-memory saver and with the SQLite saver,
# then a 100-node chain on Postgres (a local one, from scripts/postgres.sh) and the stored size
# of a 200-turn chat thread, and prints the two side by side with the speed-up.
#
#   scripts/compare-langgraph.sh            # LANGGRAPH_RUNS=5 runs per LangGraph case (median)
#   LANGGRAPH_SHAPES=supervisor_1000_handoffs,map_1000_subgraphs scripts/compare-langgraph.sh
#                                           # only those shapes on LangGraph's side (no Postgres)
#
# LangGraph is installed, pinned, into a virtualenv under $HOME/.cache/brainops. Our side is
# `cargo bench --bench executor` (criterion, median); its results are read from criterion's
# estimates. Both sides run the same graphs to the same final state (each checks it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
LANGGRAPH_VERSION=1.2.24
SQLITE_SAVER_VERSION=3.1.2
POSTGRES_SAVER_VERSION=3.2.0
PSYCOPG_VERSION=3.3.9
VENV="$HOME/.cache/brainops/langgraph-$LANGGRAPH_VERSION"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "==> installing python3-venv" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import langgraph.checkpoint.sqlite, langgraph.checkpoint.postgres' 2>/dev/null; then
  echo "==> LangGraph $LANGGRAPH_VERSION into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "langgraph==$LANGGRAPH_VERSION" \
    "langgraph-checkpoint-sqlite==$SQLITE_SAVER_VERSION" \
    "langgraph-checkpoint-postgres==$POSTGRES_SAVER_VERSION" "psycopg[binary]==$PSYCOPG_VERSION" >&2
fi

echo "==> PostgreSQL + pgvector on 127.0.0.1" >&2
eval "$(scripts/postgres.sh)"
export DATABASE_URL DATABASE_POOLER_URL

echo "==> LangGraph $LANGGRAPH_VERSION" >&2
LANGGRAPH_JSON="$(mktemp)"
OURS_LOG="$(mktemp)"
trap 'rm -f "$LANGGRAPH_JSON" "$OURS_LOG"' EXIT
"$VENV/bin/python" benches/langgraph/shapes.py >"$LANGGRAPH_JSON"

echo "==> BrainOps (cargo bench --bench executor, --bench checkpoint_postgres -- runner)" >&2
cargo bench --bench executor --locked >&2
cargo bench --bench checkpoint_postgres --locked -- runner | tee "$OURS_LOG" >&2

python3 - "$LANGGRAPH_JSON" "$CARGO_TARGET_DIR/criterion" "$OURS_LOG" <<'PY'
import json, os, re, sys
langgraph = json.load(open(sys.argv[1]))
criterion = sys.argv[2]
stored = re.search(r"200-turn messages thread: \d+ checkpoints, (\d+) bytes", open(sys.argv[3]).read())
def fmt(seconds):
    return f"{seconds * 1e3:9.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.1f} µs"
print("| shape / checkpoints | LangGraph, sync | LangGraph, async (its default) | BrainOps (sync) | speed-up vs sync / async |")
print("| --- | ---: | ---: | ---: | ---: |")
for case, lg in langgraph.items():
    shape, store = case.split("/")
    if shape == "stored_bytes" or store.endswith("@async"):
        continue
    path = os.path.join(criterion, shape, store, "new", "estimates.json")
    ours = json.load(open(path))["median"]["point_estimate"] / 1e9
    lg_async = langgraph.get(case + "@async")
    if lg_async is None:
        print(f"| {shape} / {store} | {fmt(lg)} | | {fmt(ours)} | {lg / ours:.0f}× |")
    else:
        print(f"| {shape} / {store} | {fmt(lg)} | {fmt(lg_async)} | {fmt(ours)} | {lg / ours:.0f}× / {lg_async / ours:.0f}× |")
lg_bytes = langgraph.get("stored_bytes/chat_200_turns")
if stored and lg_bytes:
    ours = int(stored.group(1))
    print(f"| 200-turn chat thread, bytes stored in Postgres | {lg_bytes:,} | | {ours:,} | {lg_bytes / ours:.0f}× less |")
PY
