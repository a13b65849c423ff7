#!/usr/bin/env bash
# Tollgate gateway benchmark, side by side with LiteLLM's proxy, on this machine only (127.0.0.1).
#
#   bench/run.sh            setup, start, bench, verify, stop (everything below)
#
# What it does:
#   1. installs the project venv (make install) and the shared harness (LiteLLM + tools, wrk)
#   2. creates a fresh PostgreSQL database ($BENCH_DB) and flushes Redis db $BENCH_REDIS_DB
#   3. migrates, seeds a provider on the harness's fake upstream (:9100) with the models
#      fake / fake-c20-d5 / fake-c20-d50, and a team with credit and a live key
#   4. starts the harness targets ($COMPARE, default: direct, LiteLLM with 2 workers and the minimal Django
#      forwarder dj-uvicorn-1w-aiohttp-sharedthread) and Tollgate under
#      uvicorn with $WORKERS workers, production settings (PostgreSQL + Redis, DEBUG off)
#   5. runs the harness's load generator over all of them (nonstream c=1,16,64; ttfb; hold)
#   6. verifies: a fixed batch of requests writes exactly one receipt each, no hold stays open,
#      and check_ledger is clean
#   7. stops only the processes it started (by PID)
#
# Knobs: ROUNDS=3 DURATION=10 CONCURRENCY=1,16,64 HOLD_STREAMS=500,2000 WORKERS=2 PORT=8000
#        COMPARE="direct litellm-2w dj-uvicorn-1w-aiohttp-sharedthread" HARNESS=bench/harness BENCH_ENV=/tmp/benchenv
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/bench/harness}
export BENCH_ENV=${BENCH_ENV:-/tmp/benchenv}
PY=$ROOT/.venv/bin/python
PORT=${PORT:-8000}
WORKERS=${WORKERS:-2}
BENCH_DB=${BENCH_DB:-tollgate_bench}
BENCH_REDIS_DB=${BENCH_REDIS_DB:-9}
COMPARE=${COMPARE:-"direct litellm-2w dj-uvicorn-1w-aiohttp-sharedthread"}
RUN=$BENCH_ENV/tollgate
mkdir -p "$RUN"

# Production settings for Tollgate's processes only (the harness's targets must not see DATABASE_URL).
TG_ENV=(DATABASE_URL=postgres://postgres@127.0.0.1:5432/$BENCH_DB REDIS_URL=redis://127.0.0.1:6379/$BENCH_REDIS_DB
        SECRET_KEY=${SECRET_KEY:-bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz}
        DEBUG=0 ALLOWED_HOSTS=127.0.0.1,localhost TOLLGATE_VAR_DIR=$RUN/var LOG_LEVEL=WARNING
        DJANGO_SETTINGS_MODULE=config.settings)

[ -d "$HARNESS" ] || { echo "shared harness not found at $HARNESS (set HARNESS=...)" >&2; exit 1; }
# Another server on $PORT would be benchmarked instead of this one (the readiness probe cannot tell).
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "port $PORT is already in use; stop that server or set PORT=..." >&2; exit 1
fi

stop_all() {
  if [ -f "$RUN/tollgate.pid" ]; then
    pid=$(cat "$RUN/tollgate.pid")
    kill "$pid" 2>/dev/null && echo "stopped tollgate ($pid)" || true
    rm -f "$RUN/tollgate.pid"
  fi
  "$HARNESS/run.sh" stop || true
}
trap stop_all EXIT

echo "== setup"
make -C "$ROOT" install >/dev/null
"$HARNESS/run.sh" setup

echo "== database $BENCH_DB, redis db $BENCH_REDIS_DB"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $BENCH_DB" >/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $BENCH_DB" >/dev/null
redis-cli -h 127.0.0.1 -n "$BENCH_REDIS_DB" flushdb >/dev/null
(cd "$ROOT" && env "${TG_ENV[@]}" "$PY" manage.py migrate --noinput -v 0)
KEY=$(cd "$ROOT" && env "${TG_ENV[@]}" "$PY" bench/seed.py --upstream http://127.0.0.1:9100/v1)

echo "== start: $COMPARE + tollgate ($WORKERS uvicorn workers on :$PORT)"
"$HARNESS/run.sh" start $COMPARE
(cd "$ROOT" && exec env "${TG_ENV[@]}" "$PY" -m config.serve --host 127.0.0.1 --port "$PORT" --workers "$WORKERS") \
   >"$RUN/tollgate.log" 2>&1 &
echo $! >"$RUN/tollgate.pid"
for _ in $(seq 1 60); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v1/models" || true)
  [ "$code" = 200 ] && break; sleep 1
done
[ "$code" = 200 ] || { echo "tollgate did not start; log:" >&2; tail -n 30 "$RUN/tollgate.log" >&2; exit 1; }

echo "== bench"
OUT=${OUT:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S).jsonl}
mkdir -p "$(dirname "$OUT")"
OUT=$OUT HOLD_STREAMS=${HOLD_STREAMS:-500,2000} \
  EXTRA_TARGETS="tollgate,http://127.0.0.1:$PORT/v1,$KEY" EXTRA_PIDS="tollgate=$(cat "$RUN/tollgate.pid")" \
  "$HARNESS/run.sh" bench

echo "== verify"
(cd "$ROOT" && env "${TG_ENV[@]}" "$PY" bench/verify.py --base "http://127.0.0.1:$PORT/v1" --key "$KEY" --requests "${VERIFY_REQUESTS:-2000}")
