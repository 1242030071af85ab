#!/usr/bin/env bash
# Fleet mode against one instance on SQLite, in one run on this machine: the hot path (a
# virtual key with a budget, spend logging) measured as
#   sqlite    one instance on SQLite, wrk at 32 connections
#   fleet1    one instance on Postgres + Redis (fleet config), wrk at 32 connections
#   fleet2    two other instances on the same Postgres + Redis, each serving on half the
#             cores (`--num_workers`, BENCH_FLEET2_WORKERS; 0 for the default of all cores), wrk
#             at 16 connections against each, both at once (req/s of each and their total)
# plus, per request: Redis commands (`INFO commandstats` deltas; "sent" counts what the
# gateways send: script calls, the probes' PINGs, invalidation PUBLISHes; "run" every command
# Redis executes, those inside the scripts included), Postgres transactions and inserted rows
# (spend rows and daily rollups; `pg_stat_database` deltas), and CPU time of the gateways, the
# private Redis and the bench database's Postgres backends while wrk ran (`/proc` ticks).
# Usage: bench/fleet.sh [seconds-per-point=5]
#   BENCH_ROUNDS (1): rounds, the cases taking turns within each; every round is printed.
#   BENCH_BIN (target/release): where idlehands and fake-upstream are (an older build's
#   binaries measure "before").
#   BENCH_PG_URL (postgresql://postgres@127.0.0.1:5432): the database idlehands_fleet_bench
#   there is dropped and made again, and dropped at the end.
#   BENCH_REDIS_URL: a Redis to use (its commandstats then count other clients' commands too);
#   by default the script starts a private redis-server on port 18119 and stops it after.
# Ports 18110 (fake upstream), 18112 (SQLite instance), 18113 to 18115 (fleet instances).
# Nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-5}"
ROUNDS="${BENCH_ROUNDS:-1}"
BIN="${BENCH_BIN:-target/release}"
PG="${BENCH_PG_URL:-postgresql://postgres@127.0.0.1:5432}"
DB=idlehands_fleet_bench
MASTER=sk-bench-master-0001
# The two-instance case splits the machine: each instance serves on half the cores' threads.
HALF="${BENCH_FLEET2_WORKERS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}"
for b in idlehands fake-upstream; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p idlehands-cli -p idlehands-testkit" >&2; exit 1; }
done
for t in wrk redis-cli psql; do
  command -v "$t" > /dev/null || { echo "needs $t (apt install wrk redis-tools postgresql-client)" >&2; exit 1; }
done

WORK=$(mktemp -d)
PIDS=()
REDIS_PID=
cleanup() {
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
  for p in ${PIDS[@]+"${PIDS[@]}"}; do wait "$p" 2>/dev/null || true; done
  [ -n "$REDIS_PID" ] && { kill "$REDIS_PID" 2>/dev/null || true; }
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" > /dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 1 3000); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; echo "not up: $1" >&2; return 1; }

if [ -n "${BENCH_REDIS_URL:-}" ]; then
  REDIS="$BENCH_REDIS_URL"
else
  command -v redis-server > /dev/null || { echo "needs redis-server (apt install redis-server) or BENCH_REDIS_URL" >&2; exit 1; }
  redis-server --port 18119 --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" > "$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  REDIS=redis://127.0.0.1:18119
  for _ in $(seq 1 300); do redis-cli -u "$REDIS" ping > /dev/null 2>&1 && break; sleep 0.01; done
fi
PREFIX="bench-fleet-$$:"
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" > /dev/null

"$BIN/fake-upstream" 127.0.0.1:18110 > "$WORK/fake.log" 2>&1 &
PIDS+=($!)
wait_for http://127.0.0.1:18110/v1/models
sed 's/127.0.0.1:18080/127.0.0.1:18110/' bench/proxy.yaml > "$WORK/sqlite.yaml"
{
  cat "$WORK/sqlite.yaml"
  printf '  redis_key_prefix: "%s"\n  redis_failure_mode: closed\nrouter_settings:\n  redis_url: %s\n' "$PREFIX" "$REDIS"
} > "$WORK/fleet.yaml"

env -u DATABASE_URL "$BIN/idlehands" proxy --config "$WORK/sqlite.yaml" --host 127.0.0.1 --port 18112 \
  --db "$WORK/bench.db" > "$WORK/sqlite.log" 2>&1 &
PIDS+=($!)
SQLITE_PID=$!
wait_for http://127.0.0.1:18112/health/liveliness || { tail -20 "$WORK/sqlite.log" >&2; exit 1; }
FLEET_PIDS=()
for port in 18113 18114 18115; do
  workers=()
  [ $port != 18113 ] && [ "$HALF" -gt 0 ] && workers=(--num_workers "$HALF")
  DATABASE_URL="$PG/$DB" "$BIN/idlehands" proxy --config "$WORK/fleet.yaml" --host 127.0.0.1 --port $port \
    ${workers[@]+"${workers[@]}"} > "$WORK/fleet-$port.log" 2>&1 &
  PIDS+=($!)
  FLEET_PIDS+=($!)
  wait_for http://127.0.0.1:$port/health/liveliness || { tail -20 "$WORK/fleet-$port.log" >&2; exit 1; }
done

vkey() { # port
  curl -fs -X POST "http://127.0.0.1:$1/key/generate" -H "Authorization: Bearer $MASTER" \
    -H 'Content-Type: application/json' -d '{"key_alias":"fleet-bench","max_budget":1000000}' \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])'
}
SQLITE_KEY=$(vkey 18112)
FLEET_KEY=$(vkey 18113) # the other instance reads it from the shared database

load() { # port key conns threads
  BENCH_KEY="$2" BENCH_STREAM=0 wrk -t "$4" -c "$3" -d "${DUR}s" --latency -s bench/chat.lua \
    "http://127.0.0.1:$1/v1/chat/completions" 2>&1 | grep RESULT || echo "RESULT rps=0 p50_us=0 p99_us=0 errors=-1 requests=0"
}
redis_calls() { # script calls and other commands sent (round trips), and every command run
  # (those scripts run included), INFO itself left out
  redis-cli -u "$REDIS" INFO commandstats | tr -d '\r' | awk -F'[:=,]' '
    /^cmdstat_/ && $1 != "cmdstat_info" { all += $3 }
    /^cmdstat_(evalsha|eval|ping|publish|script)/ { sent += $3 }
    END { print sent + 0, all + 0 }'
}
pg_counts() { # transactions committed and rows inserted in the bench database
  psql "$PG/$DB" -tAF' ' -c "SELECT xact_commit, tup_inserted FROM pg_stat_database WHERE datname = '$DB'"
}
ticks() { # CPU clock ticks (user + system) the given processes have used
  local n=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && n=$(( n + $(awk '{ print $14 + $15 }' "/proc/$p/stat") ))
  done
  echo "$n"
}
cpu() { # gateway(s) given, Redis (when private), the bench database's Postgres backends
  local pg; pg=$(psql "$PG/postgres" -tAc "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'" | tr '\n' ' ')
  # shellcheck disable=SC2086
  echo "$(ticks "$@") $(ticks $REDIS_PID) $(ticks $pg)"
}
# 2 s: the spend writer commits every second, and Postgres publishes its counts late.
counters() { sleep 2; echo "$(redis_calls) $(pg_counts)"; }

# Warm-up: connections, caches, the Redis scripts.
for port in 18112 18113 18114 18115; do
  k=$FLEET_KEY; [ $port = 18112 ] && k=$SQLITE_KEY
  BENCH_KEY="$k" wrk -t2 -c32 -d1s -s bench/chat.lua "http://127.0.0.1:$port/v1/chat/completions" > /dev/null 2>&1 || true
done

RESULTS="$WORK/results.txt"
for round in $(seq "$ROUNDS"); do
  echo "round $round: sqlite" >&2
  c0=$(cpu "$SQLITE_PID")
  echo "$round sqlite 32 $(load 18112 "$SQLITE_KEY" 32 2)" >> "$RESULTS"
  echo "$round sqlite-cpu $c0 $(cpu "$SQLITE_PID")" >> "$RESULTS"
  echo "round $round: fleet, one instance" >&2
  before=$(counters)
  c0=$(cpu "${FLEET_PIDS[0]}")
  echo "$round fleet1 32 $(load 18113 "$FLEET_KEY" 32 2)" >> "$RESULTS"
  echo "$round fleet1-cpu $c0 $(cpu "${FLEET_PIDS[0]}")" >> "$RESULTS"
  echo "$round fleet1-counts $before $(counters)" >> "$RESULTS"
  echo "round $round: fleet, two instances" >&2
  before=$(counters)
  c0=$(cpu "${FLEET_PIDS[1]}" "${FLEET_PIDS[2]}")
  load 18114 "$FLEET_KEY" 16 1 > "$WORK/a.txt" &
  wa=$!
  load 18115 "$FLEET_KEY" 16 1 > "$WORK/b.txt" &
  wb=$!
  wait $wa $wb
  echo "$round fleet2-cpu $c0 $(cpu "${FLEET_PIDS[1]}" "${FLEET_PIDS[2]}")" >> "$RESULTS"
  echo "$round fleet2-a 16 $(cat "$WORK/a.txt")" >> "$RESULTS"
  echo "$round fleet2-b 16 $(cat "$WORK/b.txt")" >> "$RESULTS"
  echo "$round fleet2-counts $before $(counters)" >> "$RESULTS"
done
errors=$(cat "$WORK"/fleet-*.log "$WORK/sqlite.log" | grep -ci "error\|panic" || true)

python3 - "$RESULTS" "$DUR" "$errors" "$REDIS_PID" "$HALF" <<'PY'
import os, re, statistics, sys
path, dur, log_errors, private, half = sys.argv[1:]
rounds = {}
for line in open(path):
    r, case, rest = line.split(" ", 2)
    if case.endswith("-counts") or case.endswith("-cpu"):
        v = [int(x) for x in rest.split()]
        rounds.setdefault(r, {})[case] = v
    else:
        kv = dict(re.findall(r"(\w+)=(-?[\d.]+)", rest))
        rounds.setdefault(r, {})[case] = {k: float(x) for k, x in kv.items()}
print(f"\nFleet bench: virtual key with a budget, spend logging, {dur}s per point, "
      f"two-instance case on {half} serving thread(s) each, "
      f"{len(rounds)} round(s), wrk on loopback, this machine\n")
print("| round | case | conns | req/s | p50 µs | p99 µs | errors | Redis sent / run per req | PG xacts / req | PG rows / req |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
ratios, cpu = [], []
for r, c in rounds.items():
    def counts(name, served):
        v = c.get(name + "-counts")
        if not v or not served:
            return "", "", ""
        d = [v[i + 4] - v[i] for i in range(4)]
        return (f"{d[0] / served:.3f} / {d[1] / served:.1f}", f"{d[2] / served:.3f}",
                f"{d[3] / served:.2f}")
    s, f1, a, b = (c.get(k) for k in ("sqlite", "fleet1", "fleet2-a", "fleet2-b"))
    def row(name, conns, x, cnt=("", "", "")):
        print(f"| {r} | {name} | {conns} | {x['rps']:.0f} | {x['p50_us']:.0f} | {x['p99_us']:.0f} | "
              f"{x['errors']:.0f} | {cnt[0]} | {cnt[1]} | {cnt[2]} |")
    row("sqlite, one instance", 32, s)
    row("fleet, one instance", 32, f1, counts("fleet1", f1["requests"]))
    row("fleet, two: A", 16, a)
    row("fleet, two: B", 16, b)
    tot = {"rps": a["rps"] + b["rps"], "p50_us": max(a["p50_us"], b["p50_us"]),
           "p99_us": max(a["p99_us"], b["p99_us"]), "errors": a["errors"] + b["errors"]}
    row("fleet, two: total (p50/p99 the worse)", 32, tot, counts("fleet2", a["requests"] + b["requests"]))
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    for name, served in (("sqlite", s["requests"]), ("fleet1", f1["requests"]),
                         ("fleet2", a["requests"] + b["requests"])):
        v = c.get(name + "-cpu")
        if v and served:
            gw, rd, pg = ((v[i + 3] - v[i]) * tick_us / served for i in range(3))
            cpu.append(f"round {r} {name}: gateway(s) {gw:.0f}, Redis {rd:.0f}, "
                       f"Postgres backends {pg:.0f} (total {gw + rd + pg:.0f})")
    if s["rps"]:
        ratios.append((r, f1["rps"] / s["rps"], tot["rps"] / s["rps"],
                       a["rps"] / (s["rps"] / 2), b["rps"] / (s["rps"] / 2)))
print()
for r, one, total, ra, rb in ratios:
    print(f"- round {r}: fleet one instance = {100 * one:.0f}% of SQLite single; fleet total = "
          f"{100 * total:.0f}% of SQLite single; each fleet instance vs half of SQLite single: "
          f"A {100 * ra:.0f}%, B {100 * rb:.0f}% (target >= 70%)")
print("- CPU µs per request while wrk ran (`/proc` ticks; the SQLite instance's spend rows are "
      "written in-process):")
for line in cpu:
    print(f"  - {line}")
if len(ratios) > 1:
    print(f"- median over rounds: total {100 * statistics.median(x[2] for x in ratios):.0f}%, "
          f"A {100 * statistics.median(x[3] for x in ratios):.0f}%, B {100 * statistics.median(x[4] for x in ratios):.0f}%")
print(f"- Redis: {'a private redis-server' if private else 'the given Redis (other clients count too)'}; "
      f"log lines with 'error' or 'panic' in the gateways' logs: {log_errors}")
PY
