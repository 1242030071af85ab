#!/usr/bin/env bash
# Store growth: the hot path (virtual key, spend logging, wrk at 32 connections) on an empty
# store, then on the same store seeded by seed_store with N spend rows over 30 days and K keys;
# on the seeded store also `/spend/logs` for the busiest key and one day (LiteLLM's daily
# summary, and the rows page with summarize=false), `/global/spend/report` over 30 days (by key,
# model and user), the 30-day `/spend/logs` summary of all keys and the first page of LiteLLM's
# `/user/daily/activity` (all, one key) and `/team/daily/activity` (one team) over 30 days, each timed end to end with
# curl, p50 of several calls. seed_store's line says how long the seeding and the daily rollups
# (computed from the seeded rows, as store migration 9 does) took. Last, the "sweep" point:
# the gateway restarted with maximum_spend_logs_retention_period 15d, so its retention sweep
# deletes the older half of the seeded rows while wrk runs (hot-path p99 against "seeded"); the
# gateway's log line says how many it deleted by the end.
# Usage: bench/store_growth.sh [rows=200000] [keys=2000] [seconds-per-point=5]
#   The issue's scale: bench/store_growth.sh 10000000 100000 10  (seeding 10M rows takes minutes)
#   BENCH_BACKENDS ("sqlite"; "sqlite postgres" for both), BENCH_PG_URL (default
#   postgresql://postgres@127.0.0.1:5432): the database idlehands_store_growth there is dropped
#   and made again; BENCH_ROUNDS (3) wrk rounds per point, the median shown; BENCH_CALLS (20)
#   calls per admin query (3 for the reports, 1 for team and customer, whose answer has a
#   part per day, key and model); BENCH_BIN (target/release); BENCH_KEEP=DIR keeps the
#   seeded SQLite file there (before the sweep) and the Postgres database (not dropped) for
#   timing queries by hand; BENCH_SEEDED=FILE uses a copy of that seeded SQLite store
#   (and its -wal) instead of seeding one: ROWS and KEYS then only label the table.
# Ports 18100 (fake upstream) and 18102 (gateway). Nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-200000}"
KEYS="${2:-2000}"
DUR="${3:-5}"
BACKENDS="${BENCH_BACKENDS:-sqlite}"
PG="${BENCH_PG_URL:-postgresql://postgres@127.0.0.1:5432}"
ROUNDS="${BENCH_ROUNDS:-3}"
CALLS="${BENCH_CALLS:-20}"
BIN="${BENCH_BIN:-target/release}"
MASTER=sk-bench-master-0001
for b in idlehands fake-upstream seed_store; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p idlehands-cli -p idlehands-testkit -p idlehands-store --bins" >&2; exit 1; }
done
command -v wrk > /dev/null || { echo "needs wrk (apt install wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
GW=
cleanup() {
  [ -n "$GW" ] && kill "$GW" 2>/dev/null
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 1 3000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; echo "not up: $1" >&2; return 1; }

"$BIN/fake-upstream" 127.0.0.1:18100 > "$WORK/fake.log" 2>&1 &
PIDS+=($!)
wait_for http://127.0.0.1:18100/v1/models
sed 's/127.0.0.1:18080/127.0.0.1:18100/' bench/proxy.yaml > "$WORK/proxy.yaml"
RESULTS="$WORK/results.txt"
{ cat "$WORK/proxy.yaml"; echo "  maximum_spend_logs_retention_period: 15d"; } > "$WORK/proxy-sweep.yaml"
grep -q '^general_settings:' "$WORK/proxy.yaml" || { echo "bench/proxy.yaml: general_settings must come last" >&2; exit 1; }
rows_left() { # backend db
  if [ "$1" = postgres ]; then psql "$2" -Atc "SELECT COUNT(*) FROM idlehands_spend_logs"
  else sqlite3 "$2" "SELECT COUNT(*) FROM idlehands_spend_logs"; fi
}

start_gw() { # backend db
  local t0; t0=$(date +%s%N)
  local cfg="$WORK/proxy.yaml"; [ "${3:-}" = sweep ] && cfg="$WORK/proxy-sweep.yaml"
  if [ "$1" = postgres ]; then
    DATABASE_URL="$2" "$BIN/idlehands" proxy --config "$cfg" --host 127.0.0.1 --port 18102 > "$WORK/gw.log" 2>&1 &
  else
    env -u DATABASE_URL "$BIN/idlehands" proxy --config "$cfg" --host 127.0.0.1 --port 18102 --db "$2" > "$WORK/gw.log" 2>&1 &
  fi
  GW=$!
  wait_for http://127.0.0.1:18102/health/liveliness || { tail -20 "$WORK/gw.log" >&2; exit 1; }
  STARTUP_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop_gw() { kill "$GW"; wait "$GW" 2>/dev/null || true; GW=; }

timed() { # label url calls: one line per call, "label code seconds"
  for _ in $(seq 1 "$3"); do
    echo "$1 $(curl -s -o /dev/null -w '%{http_code} %{time_total}' "$2" -H "Authorization: Bearer $MASTER")" >> "$WORK/admin.txt"
  done
}

phase() { # backend store(empty|seeded|sweep) db
  start_gw "$1" "$3" "$2"
  if [ ! -s "$WORK/vkey.$1" ]; then
    curl -fs -X POST http://127.0.0.1:18102/key/generate -H "Authorization: Bearer $MASTER" \
      -H 'Content-Type: application/json' -d '{"key_alias":"growth","max_budget":1000000}' \
      | python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])' > "$WORK/vkey.$1"
  fi
  local vkey; vkey=$(cat "$WORK/vkey.$1")
  BENCH_KEY="$vkey" wrk -t2 -c32 -d1s -s bench/chat.lua http://127.0.0.1:18102/v1/chat/completions > /dev/null 2>&1 || true
  for _ in $(seq "$ROUNDS"); do
    out=$(BENCH_KEY="$vkey" BENCH_STREAM=0 wrk -t2 -c32 -d "${DUR}s" --latency -s bench/chat.lua \
      http://127.0.0.1:18102/v1/chat/completions 2>&1 | grep RESULT || echo "RESULT rps=0 p50_us=0 p99_us=0 errors=-1 requests=0")
    echo "$1/$2 32 $out startup_ms=$STARTUP_MS" >> "$RESULTS"
  done
  if [ "$2" = seeded ]; then
    local day today from base=http://127.0.0.1:18102
    day=$(date -u -d '3 days ago' +%F); today=$(date -u +%F); from=$(date -u -d '29 days ago' +%F)
    timed "$1|/spend/logs-key-day-summary" "$base/spend/logs?api_key=sk-seed-000000&start_date=$day&end_date=$day" "$CALLS"
    timed "$1|/spend/logs-key-day-rows" "$base/spend/logs?api_key=sk-seed-000000&start_date=$day&end_date=$day&summarize=false" "$CALLS"
    timed "$1|/global/spend/report-30d-by-key" "$base/global/spend/report?start_date=$from&end_date=$today&group_by=api_key" 3
    timed "$1|/global/spend/report-30d-by-model" "$base/global/spend/report?start_date=$from&end_date=$today&group_by=model" 3
    timed "$1|/global/spend/report-30d-by-user" "$base/global/spend/report?start_date=$from&end_date=$today&group_by=user" 3
    timed "$1|/spend/logs-30d-summary" "$base/spend/logs?start_date=$from&end_date=$today" 3
    timed "$1|/global/spend/report-30d-by-team" "$base/global/spend/report?start_date=$from&end_date=$today&group_by=team" 1
    timed "$1|/global/spend/report-30d-by-customer" "$base/global/spend/report?start_date=$from&end_date=$today&group_by=customer" 1
    # LiteLLM's Usage page: the first page of 30 days for the admin, for one key, one team.
    timed "$1|/user/daily/activity-30d" "$base/user/daily/activity?start_date=$from&end_date=$today" 3
    timed "$1|/user/daily/activity-30d-key" "$base/user/daily/activity?start_date=$from&end_date=$today&api_key=sk-seed-000000" "$CALLS"
    timed "$1|/team/daily/activity-30d-team" "$base/team/daily/activity?start_date=$from&end_date=$today&team_ids=seed-team-0" "$CALLS"
    timed "$1|/user/daily/activity/aggregated-30d" "$base/user/daily/activity/aggregated?start_date=$from&end_date=$today&api_key_limit=20" 3
  fi
  if [ "$2" = sweep ]; then
    grep -h "retention period deleted" "$WORK/gw.log" | tail -1 | sed "s/^/$1 sweep: /" >> "$WORK/seed.txt" || true
    echo "$1 sweep: spend rows left when wrk ended: $(rows_left "$1" "$3")" >> "$WORK/seed.txt"
  fi
  stop_gw
}

for backend in $BACKENDS; do
  case "$backend" in
    sqlite) DB="$WORK/growth.db" ;;
    postgres)
      psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS idlehands_store_growth" -c "CREATE DATABASE idlehands_store_growth" > /dev/null
      DB="$PG/idlehands_store_growth" ;;
    *) echo "BENCH_BACKENDS: sqlite or postgres, not $backend" >&2; exit 1 ;;
  esac
  echo "$backend: empty store" >&2
  phase "$backend" empty "$DB"
  if [ -n "${BENCH_SEEDED:-}" ] && [ "$backend" = sqlite ]; then
    # A store seeded before (perhaps by an older seed_store: the gateway migrates it at
    # start-up, and the seeded point's start-up time shows how long that took).
    rm -f "$DB" "$DB-wal" "$DB-shm" "$WORK/vkey.$backend"
    cp "$BENCH_SEEDED" "$DB"
    if [ -e "$BENCH_SEEDED-wal" ]; then cp "$BENCH_SEEDED-wal" "$DB-wal"; fi
    echo "$backend: store copied from $BENCH_SEEDED (seeded before)" | tee -a "$WORK/seed.txt" >&2
  else
    echo "$backend: seeding $ROWS rows and $KEYS keys" >&2
    "$BIN/seed_store" --db "$DB" --rows "$ROWS" --keys "$KEYS" 2> /dev/null | sed "s/^/$backend: /" | tee -a "$WORK/seed.txt" >&2
  fi
  phase "$backend" seeded "$DB"
  if [ -n "${BENCH_KEEP:-}" ] && [ "$backend" = sqlite ]; then
    mkdir -p "$BENCH_KEEP" && for f in "$DB" "$DB-wal"; do [ -e "$f" ] && cp "$f" "$BENCH_KEEP/"; done
  fi
  phase "$backend" sweep "$DB"
  if [ "$backend" = postgres ] && [ -z "${BENCH_KEEP:-}" ]; then
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS idlehands_store_growth" > /dev/null
  fi
  [ "$backend" = sqlite ] && rm -f "$DB" "$DB-wal" "$DB-shm"
done

python3 - "$RESULTS" "$WORK/admin.txt" "$ROWS" "$KEYS" "$DUR" "$WORK/seed.txt" <<'PY'
import re, statistics, sys
sys.dont_write_bytecode = True
sys.path.insert(0, "bench")
from medians import medians
path, admin, rows_n, keys_n, dur, seed = sys.argv[1:]
rows, rounds = medians(path)
startup = {}
for line in open(path):
    m = re.search(r"startup_ms=(\d+)", line)
    if m: startup[line.split()[0]] = m.group(1)
print(f"\nStore growth: {rows_n} spend rows, {keys_n} keys over 30 days; hot path virtual key, 32 conns, "
      f"{dur}s per point, median of {rounds} rounds\n")
for line in open(seed):
    print(f"- {line.strip()}")
print()
print("| backend/store | start-up ms | req/s | p50 µs | p99 µs | errors |")
print("|---|---:|---:|---:|---:|---:|")
for (name, c), r in rows.items():
    if name.endswith("/sweep") and r["rps"] == 0: continue
    print(f"| {name} | {startup.get(name, '')} | {r['rps']:.0f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['errors']:.0f} |")
for b in sorted({n.split('/')[0] for n, _ in rows}):
    e, s = rows.get((f"{b}/empty", 32)), rows.get((f"{b}/seeded", 32))
    if e and s and e["rps"]:
        print(f"- {b}: seeded req/s = {100 * s['rps'] / e['rps']:.0f}% of empty")
    w = rows.get((f"{b}/sweep", 32))
    if s and w and s["p99_us"]:
        print(f"- {b}: p99 during the retention sweep = {w['p99_us'] / s['p99_us']:.2f}x seeded's")
calls = {}
try:
    for line in open(admin):
        label, code, secs = line.split()
        calls.setdefault(label, []).append((code, float(secs)))
except FileNotFoundError:
    pass
if calls:
    print("\n| backend | query | calls | p50 ms | max ms | non-200 |")
    print("|---|---|---:|---:|---:|---:|")
    for label, v in calls.items():
        b, q = label.split("|")
        t = [s * 1000 for _, s in v]
        bad = sum(1 for c, _ in v if c != "200")
        print(f"| {b} | {q} | {len(v)} | {statistics.median(t):.1f} | {max(t):.1f} | {bad} |")
PY
