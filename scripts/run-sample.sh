#!/usr/bin/env bash
# Builds the `brainops` CLI and runs the lead-intake graph end to end: it scores a lead,
# prices the roof, pauses for a human approval, and is resumed from a second process.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
cargo build --release --locked --bin brainops
BIN="$CARGO_TARGET_DIR/release/brainops"
export BRAINOPS_HOME="${BRAINOPS_HOME:-$PWD/.brainops}"
THREAD="lead-$(date +%s)"
LEAD='{"lead": {"name": "Ada Lovelace", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": true}}'

echo "==> graph"
"$BIN" graph graphs/lead_intake.toml --format mermaid
echo "==> run (streams events, stops at the approval question)"
"$BIN" run graphs/lead_intake.toml --thread "$THREAD" --input "$LEAD" --stream
echo "==> resume from a new process with the answer"
"$BIN" run graphs/lead_intake.toml --thread "$THREAD" --resume '"approve"'
echo "==> history of thread $THREAD"
"$BIN" threads history "$THREAD"
