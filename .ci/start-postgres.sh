#!/usr/bin/env bash
# Install (Debian package), start and prepare PostgreSQL on loopback for the study scale-out
# tests (issue 7). Prints the URL on stdout (and writes it to $1 when given):
#   export DANLU_TEST_POSTGRES_URL="$(bash .ci/start-postgres.sh)"
# Needs root (CI runs as root). Idempotent: safe to run when PostgreSQL is already up.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
log() { echo "start-postgres: $*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log "installing postgresql"
  apt-get update -qq >&2 || true
  apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
  log "creating cluster $version/main"
  pg_createcluster "$version" main >&2
fi
read -r cver cname port status _ < <(pg_lsclusters -h | head -1)
if [ "$status" != "online" ]; then
  log "starting cluster $cver/$cname on port $port"
  pg_ctlcluster "$cver" "$cname" start >&2
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done
pg_isready -h 127.0.0.1 -p "$port" >&2

psql_admin() { su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname='danlu'")" != "1" ]; then
  psql_admin "CREATE USER danlu WITH PASSWORD 'danlu'" >&2
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname='danlu_test'")" != "1" ]; then
  psql_admin "CREATE DATABASE danlu_test OWNER danlu" >&2
fi

url="postgresql://danlu:danlu@127.0.0.1:${port}/danlu_test"
if [ "${1:-}" != "" ]; then echo "$url" > "$1"; fi
echo "$url"
