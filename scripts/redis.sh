#!/usr/bin/env bash
# Installs Redis from Debian's packages and starts it on 127.0.0.1 (the optional accelerator
# of servers and workers: wake-ups, cancels, event fan-out), then prints its URL as a shell
# assignment:
#
#   REDIS_URL=redis://127.0.0.1:56379
#
# Use it as `eval "$(scripts/redis.sh)"`. Safe to re-run: the install is skipped when
# redis-server is there, and a running server is left alone. Nothing is persisted: Redis
# holds no data the engine needs (Postgres does).
#
# Settings: BRAINOPS_REDIS_ROOT (working directory, default /var/tmp/brainops-redis),
# BRAINOPS_REDIS_PORT (56379).
set -euo pipefail

ROOT="${BRAINOPS_REDIS_ROOT:-/var/tmp/brainops-redis}"
PORT="${BRAINOPS_REDIS_PORT:-56379}"
log() { echo "redis.sh: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  log "installing redis-server"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    redis-server redis-tools >&2
  # Debian's package starts its own service on 6379; ours runs on its own port instead.
  "${SUDO[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

mkdir -p "$ROOT"
if ! redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
  log "starting Redis on 127.0.0.1:$PORT"
  redis-server --bind 127.0.0.1 --port "$PORT" --dir "$ROOT" --save "" --appendonly no \
    --daemonize yes --pidfile "$ROOT/redis.pid" --logfile "$ROOT/redis.log" >&2
  for _ in $(seq 1 50); do
    redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null || { log "Redis did not start; see $ROOT/redis.log"; exit 1; }
fi
echo "REDIS_URL=redis://127.0.0.1:$PORT"
