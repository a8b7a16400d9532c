#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 (trust auth, user postgres), starting or
# installing it when this machine can. Tests read CAIRN_TEST_POSTGRES_URL (default below).
set -euo pipefail
URL="${CAIRN_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ready; then exit 0; fi
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian's packages"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL is not installed; PostgreSQL tests will be skipped (CI fails them)" >&2
    exit 0
  fi
fi
for version in $(ls /etc/postgresql); do
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
done
for _ in $(seq 1 30); do ready && break; sleep 1; done
ready || { echo "PostgreSQL did not start" >&2; exit 1; }
# trust auth for local TCP and a `test` database, as the tests expect
if ! psql "$URL" -c 'select 1' >/dev/null 2>&1; then
  su postgres -c "psql -c \"select 1\"" >/dev/null 2>&1 || true
  su postgres -c "createdb test" 2>/dev/null || true
fi
psql "$URL" -c 'select 1' >/dev/null
