#!/usr/bin/env bash
# Runs the whole codex32 test suite on a Debian machine that has only the Rust toolchain:
# installs PostgreSQL, Redis and python3 from Debian's packages when they are missing (and
# schemathesis from PyPI into a virtualenv under ~/.cache), starts
# PostgreSQL when it is not running, gives it the test role, then runs every test.
# Tests make their own PostgreSQL schema and start their own redis-server, so they run in
# parallel and leave nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/codex32-target}"
export CODEX32_TEST_DATABASE_URL="${CODEX32_TEST_DATABASE_URL:-postgres://codex32:codex32@127.0.0.1:5432/codex32_test}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "test.sh: starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  for _ in $(seq 1 50); do pg_ready && break; sleep 0.2; done
  pg_ready || { echo "test.sh: PostgreSQL did not start" >&2; exit 1; }
fi

# The test role and database, made by the postgres superuser over the local socket.
psql_admin() { as_root runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAX "$@"; }
psql_admin -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'codex32') THEN CREATE ROLE codex32 LOGIN SUPERUSER PASSWORD 'codex32'; END IF; END \$\$;"
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'codex32_test'")" != 1 ]; then
  psql_admin -c "CREATE DATABASE codex32_test OWNER codex32"
fi
# Schemas left by a test run that was killed.
psql_admin -d codex32_test -c "DO \$\$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\_%' LOOP EXECUTE 'DROP SCHEMA ' || quote_ident(s) || ' CASCADE'; END LOOP; END \$\$;"

# schemathesis, for the fuzz test of the API (tests/fuzz.rs), in a virtualenv of its own.
VENV="${CODEX32_TEST_VENV:-$HOME/.cache/codex32-venv}"
if [ ! -x "$VENV/bin/st" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "test.sh: installing python3-venv"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "test.sh: installing schemathesis into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
export CODEX32_SCHEMATHESIS="$VENV/bin/st"

cargo test --workspace --all-targets "$@"
