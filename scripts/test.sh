#!/usr/bin/env bash
# Builds everything and runs every test and lint check. Used by README and .ci/run.
#
# Sets up what the tests need first: a local PostgreSQL 15 + pgvector + PgBouncer on
# 127.0.0.1 (scripts/postgres.sh), the local chat model (scripts/local-model.sh), the
# local embedding model (scripts/local-embedder.sh), Redis (scripts/redis.sh) and llama.cpp's llama-server
# (scripts/llama-server.sh, built once, ~9 min); all are idempotent. The embedded SQLite
# is compiled in.
#
# Everything builds in the release profile: llama.cpp is compiled by a build script once
# per profile (~8 CPU-minutes), and tests, lints and benchmarks then share that one build.
# The build directory lives outside the clone so later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "==> PostgreSQL + pgvector + PgBouncer on 127.0.0.1"
eval "$(scripts/postgres.sh)"
export DATABASE_URL DATABASE_POOLER_URL
# Each test creates its own database; drop the ones earlier runs left behind.
for db in $(psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'brainops\_t\_%'"); do
  psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done

# The workers' tests drop theirs as they end; a killed run may leave one.
for db in $(psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'brainops\_workers\_%'"); do
  psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done

echo "==> Redis on 127.0.0.1 (the optional accelerator of servers and workers)"
eval "$(scripts/redis.sh)"
export REDIS_URL

echo "==> local model"
eval "$(scripts/local-model.sh)"
export BRAINOPS_LOCAL_MODEL

echo "==> local embedding model"
eval "$(scripts/local-embedder.sh)"
export BRAINOPS_EMBEDDER_MODEL

echo "==> llama.cpp's llama-server (a real OpenAI-compatible server to test against)"
eval "$(scripts/llama-server.sh)"
export BRAINOPS_LLAMA_SERVER

echo "==> formatting"
cargo fmt --all --check

echo "==> lints (no unwrap/expect/panic in library code)"
cargo clippy --release --workspace --lib --bins --locked -- -D warnings
# The executor alone, as a backend that embeds only it builds it: no SQLite, no Postgres.
cargo clippy --release --locked -p brainops-engine --no-default-features --lib -- -D warnings

echo "==> tests"
cargo test --release --workspace --locked

echo "==> agent server with LangGraph's own clients (langgraph-sdk, RemoteGraph)"
# The binary `cargo test` just built (a plain `cargo build` would rebuild it with other features).
BRAINOPS_BIN="$CARGO_TARGET_DIR/release/brainops" scripts/server-tests.sh

echo "==> benchmarks compile"
cargo bench --no-run --locked --bench executor --bench checkpoint_postgres --bench llm --bench memory --bench agents
echo "all checks passed"
