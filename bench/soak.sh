#!/usr/bin/env bash
# Soak test: `idlehands proxy` under mixed load (plain + streamed chat) for a while, against two
# flaky fake upstreams (every 10th answer a 500, every 97th a hang past the 2 s timeout) with a
# healthy fallback group, on a SQLite spend store.
# Usage: bench/soak.sh [minutes]   (default 10; SOAK_WORKERS=16, SOAK_KEEP=1 keeps the work dir)
# Checks, exit status 1 if any fails:
#   - zero 5xx answers to clients (every failure has a retry or a fallback), no broken streams;
#   - memory flat: the last RSS sample within 20% of the one at 1 minute (half-time if shorter);
#   - spend rows == requests answered (rows counted in the SQLite file after a graceful stop).
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES="${1:-10}"
SECONDS_TOTAL=$(python3 -c "print(int(float('$MINUTES') * 60))")
WORKERS="${SOAK_WORKERS:-16}"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${SOAK_KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cargo build --release --quiet -p idlehands-cli -p idlehands-testkit --bins
BIN=target/release

wait_for() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done; echo "not up: $1" >&2; return 1; }

$BIN/fake-upstream 127.0.0.1:18090 --flaky > "$WORK/fake-a.log" 2>&1 & PIDS+=($!)
$BIN/fake-upstream 127.0.0.1:18091 --flaky > "$WORK/fake-b.log" 2>&1 & PIDS+=($!)
$BIN/fake-upstream 127.0.0.1:18092 > "$WORK/fake-fallback.log" 2>&1 & PIDS+=($!)
for p in 18090 18091 18092; do wait_for "http://127.0.0.1:$p/v1/models"; done

$BIN/idlehands proxy --config bench/soak.yaml --host 127.0.0.1 --port 18093 --db "$WORK/soak.db" \
  > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
wait_for http://127.0.0.1:18093/health/liveliness

echo "soak: ${MINUTES} min, ${WORKERS} workers, flaky upstreams on 18090/18091, fallback on 18092"
python3 bench/soak_load.py 127.0.0.1 18093 sk-soak-master-0001 "$SECONDS_TOTAL" "$WORKERS" > "$WORK/load.json" &
LOAD_PID=$!
PIDS+=($LOAD_PID)

START=$(date +%s)
: > "$WORK/rss.txt"
while kill -0 "$LOAD_PID" 2>/dev/null; do
  echo "$(( $(date +%s) - START )) $(ps -o rss= -p "$PROXY_PID" | tr -d ' ')" >> "$WORK/rss.txt"
  sleep 5
done
wait "$LOAD_PID"

# Graceful stop: in-flight requests finish and the spend queue is flushed before exit.
kill -TERM "$PROXY_PID"
for _ in $(seq 1 600); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PROXY_PID" 2>/dev/null; then echo "gateway did not stop within 60 s" >&2; exit 1; fi

python3 - "$WORK" "$SECONDS_TOTAL" <<'PY'
import json, os, sqlite3, sys
work, total = sys.argv[1], int(sys.argv[2])
load = json.load(open(os.path.join(work, "load.json")))
samples = [tuple(map(int, l.split())) for l in open(os.path.join(work, "rss.txt")) if len(l.split()) == 2]
ref_at = 60 if total >= 120 else total // 2
ref = next((kb for t, kb in samples if t >= ref_at), samples[0][1] if samples else 0)
last = samples[-1][1] if samples else 0
rows = None
db = os.path.join(work, "soak.db")
if os.path.exists(db):
    con = sqlite3.connect(db)
    have = con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'idlehands_spend_logs'").fetchone()[0]
    if have:
        rows = con.execute("SELECT count(*) FROM idlehands_spend_logs").fetchone()[0]
        by_status = dict(con.execute("SELECT status, count(*) FROM idlehands_spend_logs GROUP BY status").fetchall())
print(f"answered {load['answered']} requests ({load['answered'] / max(total, 1):.0f}/s): statuses {load['statuses']}, "
      f"broken streams {load['stream_errors']}, transport errors {load['transport_errors']}")
print(f"latency p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, max {load['max_ms']} ms")
print(f"RSS: {ref // 1024} MB at {ref_at}s, {last // 1024} MB at the end ({100 * last / max(ref, 1):.0f}%); "
      f"samples (s:MB) {' '.join(f'{t}:{kb // 1024}' for t, kb in samples[::max(1, len(samples) // 12)])}")
ok = True
def check(cond, what):
    global ok
    print(("PASS " if cond else "FAIL ") + what)
    ok = ok and cond
check(load["five_xx"] == 0, f"zero 5xx to clients ({load['five_xx']})")
check(load["stream_errors"] == 0 and load["transport_errors"] == 0, "no broken streams or connections")
check(last <= ref * 1.2, "memory flat (last sample within 20% of the reference)")
if rows is None:
    print("SKIP spend rows == requests answered (no spend-log table in the store)")
else:
    check(rows == load["answered"], f"spend rows == requests answered ({rows} rows {by_status}, {load['answered']} answered)")
sys.exit(0 if ok else 1)
PY
