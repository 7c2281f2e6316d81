#!/usr/bin/env bash
# Builds the `brainops` CLI and runs the lead-intake graph end to end with its checkpoints in
# PostgreSQL, as production does on Supabase: it scores a lead, prices the roof, pauses for
# a human approval, and is resumed from a second process that connects through PgBouncer in
# transaction mode (Supabase's pooler). Then the local model drafts a note to the customer.
# Sets up the local Postgres and fetches the local model itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
eval "$(scripts/postgres.sh)"
eval "$(scripts/local-model.sh)"
export BRAINOPS_LOCAL_MODEL
psql "$DATABASE_URL" -Atc "SELECT 1 FROM pg_database WHERE datname = 'brainops'" | grep -q 1 ||
  psql "$DATABASE_URL" -qc "CREATE DATABASE brainops"
DIRECT="${DATABASE_URL%/*}/brainops"
POOLED="${DATABASE_POOLER_URL%%/postgres\?*}/brainops?pgbouncer=true"

cargo build --release --locked --bin brainops
BIN="$CARGO_TARGET_DIR/release/brainops"
export BRAINOPS_HOME="${BRAINOPS_HOME:-$PWD/.brainops}"
THREAD="lead-$(date +%s)"
LEAD='{"lead": {"name": "Ada Lovelace", "area_sqft": 2000, "pitch": 6, "roof_age_years": 22, "storm_damage": true}}'

echo "==> graph"
"$BIN" graph graphs/lead_intake.toml --format mermaid
echo "==> run (streams events, checkpoints in Postgres, stops at the approval question)"
"$BIN" run graphs/lead_intake.toml --checkpoint "$DIRECT" --thread "$THREAD" --input "$LEAD" --stream
echo "==> resume from a new process, through the transaction pooler, with the answer"
"$BIN" run graphs/lead_intake.toml --checkpoint "$POOLED" --thread "$THREAD" --resume '"approve"'
echo "==> history of thread $THREAD"
BRAINOPS_CHECKPOINT="$DIRECT" "$BIN" threads history "$THREAD"
echo "==> the local model (in-process, no key, no network) drafts a note to the customer"
"$BIN" chat --stream --max-tokens 60 --system "You write short, friendly notes for a roofing company." \
  "Write one sentence thanking Ada Lovelace for approving her roof replacement."
