#!/usr/bin/env bash
# Installs and starts a local PostgreSQL 15 with pgvector 0.8 (what Supabase runs) on
# 127.0.0.1, plus a PgBouncer in transaction mode in front of it (what Supabase's pooler
# does), then prints the connection URLs as shell assignments:
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres
#   DATABASE_POOLER_URL=postgres://postgres@127.0.0.1:56432/postgres?pgbouncer=true
#
# Use it as `eval "$(scripts/postgres.sh)"`. Safe to re-run: every step is skipped when its
# result is already there, and a running server is left alone (a re-run takes ~0.1 s).
# Debian 12 has no pgvector package, so pgvector is built from Debian trixie's source package.
#
# Settings: BRAINOPS_PG_ROOT (cluster directory, default /var/tmp/brainops-postgres),
# BRAINOPS_PG_PORT (55432), BRAINOPS_PGBOUNCER_PORT (56432). The cluster runs with
# fsync=off: it is for tests and local runs, never for production data.
set -euo pipefail

ROOT="${BRAINOPS_PG_ROOT:-/var/tmp/brainops-postgres}"
PORT="${BRAINOPS_PG_PORT:-55432}"
BOUNCER_PORT="${BRAINOPS_PGBOUNCER_PORT:-56432}"
PG_BIN=/usr/lib/postgresql/15/bin
log() { echo "postgres.sh: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

# Packages: server 15, headers to build pgvector against, and PgBouncer.
need=()
[ -x "$PG_BIN/postgres" ] || need+=(postgresql-15)
[ -x "$PG_BIN/pg_config" ] || [ -x /usr/bin/pg_config ] || need+=(postgresql-server-dev-15)
[ -f /usr/include/postgresql/15/server/postgres.h ] || need+=(postgresql-server-dev-15)
command -v pgbouncer >/dev/null || need+=(pgbouncer)
VECTOR_CONTROL=/usr/share/postgresql/15/extension/vector.control
if [ ! -f "$VECTOR_CONTROL" ]; then
  command -v make >/dev/null && command -v gcc >/dev/null || need+=(build-essential)
  command -v dpkg-source >/dev/null || need+=(dpkg-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >&2
  # Debian's packages start their own services; ours run on their own ports instead.
  "${SUDO[@]}" systemctl disable --now pgbouncer >/dev/null 2>&1 || true
fi

# pgvector 0.8 from trixie's source package, against bookworm's PostgreSQL 15.
if [ ! -f "$VECTOR_CONTROL" ]; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$MIRROR" ]; then
    MIRROR=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  [ -n "$MIRROR" ] || { log "cannot find a Debian mirror in the apt sources"; exit 1; }
  SRC=/etc/apt/sources.list.d/brainops-trixie-src.sources
  if [ ! -f "$SRC" ]; then
    log "adding trixie deb-src for pgvector"
    printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$MIRROR" | "${SUDO[@]}" tee "$SRC" >/dev/null
  fi
  "${SUDO[@]}" apt-get update -qq >&2
  BUILD=$(mktemp -d)
  trap 'rm -rf "$BUILD"' EXIT
  (cd "$BUILD" && apt-get source -qq pgvector >&2)
  DIR=$(find "$BUILD" -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
  log "building pgvector in $DIR"
  make -s -C "$DIR" with_llvm=no PG_CONFIG="$PG_BIN/pg_config" >&2
  "${SUDO[@]}" make -s -C "$DIR" install with_llvm=no PG_CONFIG="$PG_BIN/pg_config" >&2
fi

# The server refuses to run as root: the cluster belongs to `postgres` when we are root.
RUN=()
OWNER=$(id -un)
if [ "$(id -u)" -eq 0 ]; then RUN=(runuser -u postgres --); OWNER=postgres; fi
mkdir -p "$ROOT"
chown "$OWNER" "$ROOT"
if [ ! -f "$ROOT/data/PG_VERSION" ]; then
  log "initdb in $ROOT/data"
  "${RUN[@]}" "$PG_BIN/initdb" -D "$ROOT/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
fi
if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  log "starting PostgreSQL on 127.0.0.1:$PORT"
  "${RUN[@]}" "$PG_BIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/postgres.log" -w -s \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -k $ROOT -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >&2
fi
PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres \
  -c 'CREATE EXTENSION IF NOT EXISTS vector' >&2

# PgBouncer in transaction mode: a client gets a server connection for one transaction
# only, and (at 1.18) prepared statements do not survive between transactions.
if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$BOUNCER_PORT"; then
  log "starting PgBouncer (transaction mode) on 127.0.0.1:$BOUNCER_PORT"
  cat >"$ROOT/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PORT user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $ROOT/pgbouncer.users
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
logfile = $ROOT/pgbouncer.log
pidfile = $ROOT/pgbouncer.pid
EOF
  echo '"postgres" ""' >"$ROOT/pgbouncer.users"
  chown "$OWNER" "$ROOT/pgbouncer.ini" "$ROOT/pgbouncer.users"
  "${RUN[@]}" pgbouncer -d -q "$ROOT/pgbouncer.ini"
  for _ in $(seq 50); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$BOUNCER_PORT" && break
    sleep 0.1
  done
fi

echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
echo "DATABASE_POOLER_URL=postgres://postgres@127.0.0.1:$BOUNCER_PORT/postgres?pgbouncer=true"
