#!/usr/bin/env bash
# The standard benchmark set of codex32 (loadtest/README.md), in under five minutes on two
# cores: builds the release binary, then for each deployment — `codex32 dev` on SQLite, and
# api + scheduler + worker on local PostgreSQL and a private redis-server — starts the codex32
# processes itself, runs the scenarios against them with `codex32 loadtest`, and stops them.
# Reports (JSON + SVG) go to $OUT; a summary table of every run is printed at the end.
#
# Needs: PostgreSQL on 127.0.0.1:5432 with the test role (./scripts/test.sh sets it up, or
# point CODEX32_BENCH_PG at a superuser URL), redis-server, curl and python3.
# Knobs (environment): OUT, SCALE (multiplies sizes and durations; default 1), CONCURRENCY
# (slots of each no-op worker; default 50, as the peers in issue #7 were measured),
# REAL_CONCURRENCY (slots of each real worker; default 16), WORKERS (distributed workers;
# default 2), ONLY (dev or dist), RUNS (run names to keep, e.g. "burst-batch burst-backlog";
# default all), BIN (a codex32 binary to use instead of building one).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/codex32-target}"
OUT="${OUT:-loadtest-results/bench-$(date +%Y%m%d-%H%M%S)}"
SCALE="${SCALE:-1}"
CONCURRENCY="${CONCURRENCY:-50}"
REAL_CONCURRENCY="${REAL_CONCURRENCY:-16}"
WORKERS="${WORKERS:-2}"
ONLY="${ONLY:-all}"
RUNS="${RUNS:-}"
PG="${CODEX32_BENCH_PG:-postgres://codex32:codex32@127.0.0.1:5432}"
# Connection parameters of codex32's own database URL. The PostgreSQL of a Debian package
# offers TLS, which a client takes when it may; over loopback it only adds work to every
# statement on both ends, so the bench asks for none (set to "" to measure with it).
PG_PARAMS="${CODEX32_BENCH_PG_PARAMS-sslmode=disable}"
REDIS_PORT="${CODEX32_BENCH_REDIS_PORT:-16379}"
ADMIN_EMAIL=bench@codex32.local
ADMIN_PASSWORD=bench-password-0123
WORK="$(mktemp -d)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

n() { python3 -c "print(max(1, int($1 * $SCALE)))"; }
say() { printf '\n== %s\n' "$*" >&2; }

# ---- processes this script started, stopped on exit -------------------------------------
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

# start NAME ARGS...: runs "$BIN ARGS" in the background, stdout and stderr to $WORK/NAME.*
start() {
  local name=$1; shift
  "$BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
}

# api_url NAME: waits for the process to announce its address and prints it.
api_url() {
  for _ in $(seq 1 300); do
    local url
    url=$(sed -n 's/^codex32 API listening on //p' "$WORK/$1.out" | head -n 1)
    if [ -n "$url" ]; then echo "$url"; return; fi
    sleep 0.1
  done
  echo "bench.sh: $1 did not start:" >&2; cat "$WORK/$1.err" >&2; exit 1
}

# api_key URL: logs in as the bench admin and prints a new admin API key.
api_key() {
  local token
  token=$(curl -sf "$1/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\": \"$ADMIN_EMAIL\", \"password\": \"$ADMIN_PASSWORD\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
  curl -sf "$1/api/v1/api-keys" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name": "bench", "role": "admin"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}

# await_at_least URL KEY PATH EXPR N SECONDS WHAT: polls GET PATH every 0.1 s until the
# Python expression EXPR over its JSON body (`j`) reaches N; fails after SECONDS.
await_at_least() {
  for _ in $(seq 1 $(( $6 * 10 ))); do
    local got
    got=$(curl -sf "$1$3" -H "authorization: Bearer $2" |
      python3 -c "import json, sys; j = json.load(sys.stdin); print($4)")
    [ "$got" -ge "$5" ] && return
    sleep 0.1
  done
  echo "bench.sh: $7 in $6 s" >&2; exit 1
}

# await_workers URL KEY N: waits until N workers are alive.
await_workers() {
  await_at_least "$1" "$2" /api/v1/workers 'sum(w["state"] == "alive" for w in j)' "$3" 30 \
    "workers did not register"
}

# await_ready URL KEY N: waits until the queues hold N executions ready to run.
await_ready() {
  await_at_least "$1" "$2" /api/v1/queues 'sum(p["ready"] for p in j)' "$3" 120 \
    "the backlog of $3 executions was not queued"
}

# The runs of standard_set; sandboxed-true runs on real workers after them; burst-backlog
# (distributed only) before the workers start.
STANDARD_RUNS="idle-dispatch burst burst-batch steady-1000 mixed cron-1000"

# wanted NAME...: whether RUNS is unset or names one of them.
wanted() {
  [ -z "$RUNS" ] && return 0
  local name
  for name in "$@"; do [[ " $RUNS " == *" $name "* ]] && return 0; done
  return 1
}

# lt DEPLOYMENT NAME SCENARIO ARGS...: one run, its report in $OUT/DEPLOYMENT-NAME.
lt() {
  local deployment=$1 name=$2; shift 2
  wanted "$name" || return 0
  say "$deployment: $name"
  "$BIN" loadtest "$@" --url "$URL" --api-key "$KEY" --label "$deployment $name" \
    --out "$OUT/$deployment-$name" --drain-timeout-s 60
}

# The standard scenarios against the deployment at $URL (noop executor).
standard_set() {
  local d=$1
  lt "$d" idle-dispatch steady --rate 20 --duration-s "$(n 10)"
  lt "$d" burst burst -n "$(n 10000)" -c 8
  lt "$d" burst-batch burst -n "$(n 20000)" -c 4 --batch 500
  lt "$d" steady-1000 steady --rate 1000 --duration-s "$(n 10)"
  lt "$d" mixed mixed --rate 500 --duration-s "$(n 10)" --read-rate 50 --subscribers 4
  lt "$d" cron-1000 cron -m 1000 --duration-s "$(n 10)"
}

common_env() {
  export CODEX32_ADMIN_EMAIL=$ADMIN_EMAIL CODEX32_ADMIN_PASSWORD=$ADMIN_PASSWORD
  export CODEX32_JWT_SECRET=bench-secret-bench-secret-bench-secret-0123
  export CODEX32_BIND=127.0.0.1:0 CODEX32_LOG=warn CODEX32_CONCURRENCY=$CONCURRENCY
  # One API key sends all the load: the per-caller rate limit would answer 429 to most of it.
  export CODEX32_RATE_LIMIT_PER_MIN=0
}

# ---- build (unless BIN names a binary to use; it must be called codex32: processes are
# sampled by name) ---------------------------------------------------------------------------
if [ -z "${BIN:-}" ]; then
  say "building the release binary"
  cargo build --release --bin codex32
  BIN="$CARGO_TARGET_DIR/release/codex32"
fi
common_env

# ---- codex32 dev: SQLite, in-process queue ------------------------------------------------
run_dev() {
  if wanted $STANDARD_RUNS; then
    say "deployment: codex32 dev (SQLite)"
    export CODEX32_DATA_DIR="$WORK/dev-data"
    start dev dev --executor noop
    URL=$(api_url dev); KEY=$(api_key "$URL")
    standard_set dev
    stop_all
  fi
  wanted sandboxed-true || return 0
  say "deployment: codex32 dev, real executor (a sandboxed \`true\` bot)"
  export CODEX32_DATA_DIR="$WORK/dev-real-data"
  CODEX32_CONCURRENCY=$REAL_CONCURRENCY start dev-real dev
  URL=$(api_url dev-real); KEY=$(api_key "$URL")
  lt dev sandboxed-true burst -n "$(n 2000)" -c 8 --script true
  stop_all
}

# ---- distributed: api + scheduler + workers on PostgreSQL and Redis -------------------------
run_distributed() {
  wanted $STANDARD_RUNS burst-backlog sandboxed-true || return 0
  say "deployment: distributed (PostgreSQL + Redis, $WORKERS workers)"
  psql "$PG/postgres" -qtAX -c "DROP DATABASE IF EXISTS codex32_bench" -c "CREATE DATABASE codex32_bench" >/dev/null
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.out" 2>&1 &
  PIDS+=($!)
  export CODEX32_DATABASE_URL="$PG/codex32_bench${PG_PARAMS:+?$PG_PARAMS}" CODEX32_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  export CODEX32_DATA_DIR="$WORK/dist-data"
  "$BIN" migrate >/dev/null
  start api api
  start scheduler scheduler
  URL=$(api_url api); KEY=$(api_key "$URL")
  if wanted $STANDARD_RUNS burst-backlog; then
    # The peers' way (issue #7): a backlog enqueued while no worker runs, then the workers
    # started; the report's "from the first start" rate is how fast they drained it.
    local backlog=
    if wanted burst-backlog; then
      lt dist burst-backlog burst -n "$(n 20000)" -c 4 --batch 500 &
      backlog=$!
      await_ready "$URL" "$KEY" "$(n 20000)"
    fi
    for i in $(seq 1 "$WORKERS"); do start "worker-$i" worker --executor noop --worker-id "bench-$i"; done
    await_workers "$URL" "$KEY" "$WORKERS"
    [ -z "$backlog" ] || wait "$backlog"
    standard_set dist
    for pid in "${PIDS[@]: -$WORKERS}"; do kill -TERM "$pid"; wait "$pid" || true; done
  fi
  if ! wanted sandboxed-true; then stop_all; unset CODEX32_DATABASE_URL CODEX32_REDIS_URL; return 0; fi
  say "distributed: real executor (a sandboxed \`true\` bot)"
  for i in $(seq 1 "$WORKERS"); do
    CODEX32_CONCURRENCY=$REAL_CONCURRENCY start "worker-real-$i" worker --sandbox auto --worker-id "bench-real-$i"
  done
  await_workers "$URL" "$KEY" "$WORKERS"
  lt dist sandboxed-true burst -n "$(n 2000)" -c 8 --script true
  stop_all
  unset CODEX32_DATABASE_URL CODEX32_REDIS_URL
}

started=$(date +%s)
[ "$ONLY" = dist ] || run_dev
[ "$ONLY" = dev ] || run_distributed
say "done in $(( $(date +%s) - started )) s (after the build); reports in $OUT"
"$BIN" loadtest --summarize "$OUT"/*/report.json | tee "$OUT/summary.md"
