#!/usr/bin/env bash
# Builds everything and runs every test and lint check. Used by README and .ci/run.
#
# Needs only the Rust toolchain: the embedded SQLite is compiled in (rusqlite "bundled").
# The build directory lives outside the clone so later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "==> formatting"
cargo fmt --all --check

echo "==> lints (no unwrap/expect/panic in library code)"
cargo clippy --workspace --lib --bins --locked -- -D warnings

echo "==> tests"
cargo test --workspace --locked

echo "==> benchmarks compile"
cargo bench --no-run --locked --bench executor
echo "all checks passed"
