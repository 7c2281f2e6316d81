#!/usr/bin/env bash
# Ends with the main job: the lead-to-proposal business graph end to end, offline, with the
# local model behind every agent and the embedded memory, streaming its progress and
# printing a readable result (examples/lead_to_proposal.rs). Before it:
# builds the `brainops` CLI and runs the lead-intake graph end to end with its checkpoints in
# PostgreSQL, as production does on Supabase: it scores a lead, prices the roof, pauses for
# a human approval, and is resumed from a second process that connects through PgBouncer in
# transaction mode (Supabase's pooler). Then the local model drafts a note to the customer,
# and the customer-call graph recalls and remembers facts in long-term memory (Postgres +
# pgvector, local embeddings). Sets up the local Postgres and fetches the local models itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
eval "$(scripts/postgres.sh)"
eval "$(scripts/local-model.sh)"
eval "$(scripts/local-embedder.sh)"
export BRAINOPS_LOCAL_MODEL BRAINOPS_EMBEDDER_MODEL
psql "$DATABASE_URL" -Atc "SELECT 1 FROM pg_database WHERE datname = 'brainops'" | grep -q 1 ||
  psql "$DATABASE_URL" -qc "CREATE DATABASE brainops"
DIRECT="${DATABASE_URL%/*}/brainops"
POOLED="${DATABASE_POOLER_URL%%/postgres\?*}/brainops?pgbouncer=true"

cargo build --release --locked --bin brainops --example lead_to_proposal
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
echo
echo "==> long-term memory in Postgres (pgvector, local all-MiniLM-L6-v2 embeddings)"
"$BIN" memory put --store "$DIRECT" --namespace tenant:acme/customer:42 --key roof \
  --value '{"kind": "semantic", "text": "Roof: 20-year-old asphalt shingles, 6/12 pitch, north slope hail-damaged in May"}'
"$BIN" memory put --store "$DIRECT" --namespace tenant:acme/customer:42 --key dog \
  --value '{"kind": "semantic", "text": "A large dog lives there; keep the side gate shut"}'
"$BIN" memory search --store "$DIRECT" --namespace tenant:acme --query "is there an animal on the property?" --limit 1
echo "==> a graph that recalls before answering and remembers the call (run twice: the repeat merges)"
for _ in 1 2; do
  "$BIN" run graphs/customer_call.toml --memory "$POOLED" --checkpoint "$DIRECT" \
    --input '{"customer_id": 42, "question": "How old is my roof, and was it damaged?"}'
done
echo "==> the agent catalog"
"$BIN" agents list --category revenue
echo
echo "==> main job: lead -> qualification -> estimate -> proposal -> follow-up, offline"
echo "    (local SmolLM2-135M behind every agent, embedded memory in $BRAINOPS_HOME/memory.db,"
echo "     integrations record what they would send because no keys are set)"
env -u SENDGRID_API_KEY BRAINOPS_INTEGRATIONS=dry-run \
  "$CARGO_TARGET_DIR/release/examples/lead_to_proposal" --model local:smollm2-135m
