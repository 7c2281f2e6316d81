#!/usr/bin/env bash
# Cold start, whole process: `brainops --help`, `validate` and `run --checkpoint memory` on a
# one-node graph and on a 1,000-node `count + 1` chain, timed from exec to exit (median of
# COLD_START_RUNS, default 30). With --langgraph it also times a Python process that builds,
# compiles and invokes the same chain in LangGraph (the pinned virtualenv that
# scripts/compare-langgraph.sh installs; this installs it when missing).
#
#   scripts/cold-start.sh [--langgraph]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
RUNS="${COLD_START_RUNS:-30}"
LANGGRAPH_VERSION=1.2.24
VENV="$HOME/.cache/brainops/langgraph-$LANGGRAPH_VERSION"

cargo build --release --locked --bin brainops >&2
BIN="$CARGO_TARGET_DIR/release/brainops"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK" <<'PY'
import sys
work = sys.argv[1]
open(f"{work}/one.toml", "w").write(
    '[graph]\nname = "one"\n[state]\ncount = { type = "integer", default = 0 }\n'
    '[nodes.bump]\nset = { count = "state.count + 1" }\n'
    '[[edges]]\nfrom = "START"\nto = "bump"\n[[edges]]\nfrom = "bump"\nto = "END"\n')
n = 1000
s = f'[graph]\nname = "chain"\nrecursion_limit = {n + 1}\n[state]\ncount = {{ type = "integer", default = 0 }}\n'
s += "".join(f'[nodes.n{i}]\nset = {{ count = "state.count + 1" }}\n' for i in range(n))
s += '[[edges]]\nfrom = "START"\nto = "n0"\n'
s += "".join(f'[[edges]]\nfrom = "n{i - 1}"\nto = "n{i}"\n' for i in range(1, n))
s += f'[[edges]]\nfrom = "n{n - 1}"\nto = "END"\n'
open(f"{work}/chain.toml", "w").write(s)
PY

CASES=(
  "brainops --help" -- "$BIN" --help ";;"
  "brainops validate, 1 node" -- "$BIN" validate "$WORK/one.toml" ";;"
  "brainops validate, 1,000-node chain" -- "$BIN" validate "$WORK/chain.toml" ";;"
  "brainops run --checkpoint memory, 1 node" -- "$BIN" run "$WORK/one.toml" --checkpoint memory ";;"
  "brainops run --checkpoint memory, 1,000-node chain" -- "$BIN" run "$WORK/chain.toml" --checkpoint memory
)
if [ "${1:-}" = "--langgraph" ]; then
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import langgraph' 2>/dev/null; then
    echo "==> LangGraph $LANGGRAPH_VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "langgraph==$LANGGRAPH_VERSION" >&2
  fi
  CASES+=(";;" "LangGraph $LANGGRAPH_VERSION: python, build + compile + invoke, 1,000-node chain" -- "$VENV/bin/python" benches/cold_start/langgraph_chain.py)
fi
echo "| command (whole process) | median | fastest |"
echo "| --- | ---: | ---: |"
python3 benches/cold_start/measure.py "$RUNS" "${CASES[@]}"
