#!/usr/bin/env bash
# The agent server's black-box suite: LangGraph's own clients (langgraph-sdk, RemoteGraph)
# drive `brainops serve` over HTTP and SSE, and Playwright drives the console (/ui) in
# Debian's Chromium.
#
#   scripts/server-tests.sh [pytest args]     # e.g. -k interrupt -x
#
# Installs the pinned clients into a virtualenv under $HOME/.cache/brainops (never committed),
# builds the `brainops` binary, and runs tests/server/*.py with pytest; each test module
# starts its own server on a free loopback port with the graphs in tests/server/graphs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brainops/target}"
SDK_VERSION=0.4.14
LANGGRAPH_VERSION=1.2.24
PYTEST_VERSION=8.4.2
FASTAPI_VERSION=0.165.0
PYJWT_VERSION=2.10.1
# Playwright for Python drives the system Chromium (`playwright install` downloads a browser,
# which this network refuses).
PLAYWRIGHT_VERSION=1.65.2
# Real receivers for the observability tests: OpenTelemetry's own protobuf messages (OTLP),
# Prometheus' own text parser and Sentry's own envelope parser.
OTEL_PROTO_VERSION=1.45.2
PROMETHEUS_CLIENT_VERSION=0.26.0
SENTRY_SDK_VERSION=2.76.0
VENV="$HOME/.cache/brainops/server-tests-sdk-$SDK_VERSION"

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "==> installing python3-venv" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import langgraph_sdk, langgraph.pregel.remote, pytest, fastapi, jwt, cryptography' 2>/dev/null; then
  echo "==> langgraph-sdk $SDK_VERSION, langgraph $LANGGRAPH_VERSION, pytest, fastapi and pyjwt into $VENV" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "langgraph-sdk==$SDK_VERSION" "langgraph==$LANGGRAPH_VERSION" \
    "pytest==$PYTEST_VERSION" "fastapi==$FASTAPI_VERSION" \
    "pyjwt[crypto]==$PYJWT_VERSION" >&2
fi
if [ "$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("playwright"))' 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]; then
  echo "==> playwright $PLAYWRIGHT_VERSION (Python) into $VENV" >&2
  "$VENV/bin/pip" install -q "playwright==$PLAYWRIGHT_VERSION" >&2
fi
if ! "$VENV/bin/python" - "$OTEL_PROTO_VERSION" "$PROMETHEUS_CLIENT_VERSION" "$SENTRY_SDK_VERSION" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
assert [version(p) for p in ("opentelemetry-proto", "prometheus-client", "sentry-sdk")] == sys.argv[1:]
PY
  echo "==> opentelemetry-proto, prometheus-client and sentry-sdk into $VENV" >&2
  "$VENV/bin/pip" install -q "opentelemetry-proto==$OTEL_PROTO_VERSION" \
    "prometheus-client==$PROMETHEUS_CLIENT_VERSION" "sentry-sdk==$SENTRY_SDK_VERSION" >&2
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "==> Debian's chromium (the console's browser tests)" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
if [ -z "$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null)" ]; then
  echo "==> Debian's faketime (a worker whose clock is behind, in test_workers.py)" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime >&2
fi

if [ -z "${BRAINOPS_EMBEDDER_MODEL:-}" ]; then
  eval "$(scripts/local-embedder.sh)"
  export BRAINOPS_EMBEDDER_MODEL
fi
if [ -z "${BRAINOPS_LOCAL_MODEL:-}" ]; then
  eval "$(scripts/local-model.sh)"
  export BRAINOPS_LOCAL_MODEL
fi
if [ ! -d tests/server/js/node_modules/@langchain/langgraph-sdk ]; then
  echo "==> @langchain/langgraph-sdk (pinned in tests/server/js/package.json)" >&2
  (cd tests/server/js && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
# scripts/test.sh passes the binary its `cargo test` built; alone, build it.
if [ -z "${BRAINOPS_BIN:-}" ]; then
  cargo build --release --locked --bin brainops >&2
  BRAINOPS_BIN="$CARGO_TARGET_DIR/release/brainops"
fi
export BRAINOPS_BIN
exec "$VENV/bin/python" -m pytest -q tests/server "$@"
