#!/usr/bin/env bash
# Soak test: `idlehands proxy` under mixed load (plain + streamed chat) for a while, against two
# flaky fake upstreams (every 10th answer a 500, every 97th a hang past the 2 s timeout) with a
# healthy fallback group, on a SQLite spend store, through a virtual key, with faults mixed in
# (see bench/soak_load.py): clients hanging up mid-stream, wrong keys, oversized bodies and
# metadata, an upstream answering junk, an upstream reporting absurd usage.
# Usage: bench/soak.sh [minutes]   (default 10; SOAK_WORKERS=16, SOAK_KEEP=1 keeps the work dir)
# Checks, exit status 1 if any fails (a check that cannot run fails too):
#   - zero 5xx answers to clients (every failure has a retry or a fallback), no broken streams;
#     junk upstream answers reach clients only as 200 or 502; refusals have their status
#     (wrong key 401, declared 2 MB body 413, 20 KB metadata 400);
#   - memory flat: the last RSS sample within 20% of the one at 1 minute (half-time if shorter);
#   - spend rows == requests routed to a model (answered + hung up; the fallback upstream
#     answers every call with the same response id; rows counted in the SQLite
#     file after a graceful stop), the key's spend == the sum of its rows, no row above the
#     per-call ceilings ($1,000,000, 1e12 tokens), and /global/spend/report and the
#     /spend/logs day summary answer 200 over the soak's day.
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
$BIN/fake-upstream 127.0.0.1:18092 --repeat-ids > "$WORK/fake-fallback.log" 2>&1 & PIDS+=($!)
$BIN/fake-upstream 127.0.0.1:18094 --junk 3 > "$WORK/fake-junk.log" 2>&1 & PIDS+=($!)
$BIN/fake-upstream 127.0.0.1:18095 --absurd-usage > "$WORK/fake-absurd.log" 2>&1 & PIDS+=($!)
for p in 18090 18091 18092 18094 18095; do wait_for "http://127.0.0.1:$p/v1/models"; done

$BIN/idlehands proxy --config bench/soak.yaml --host 127.0.0.1 --port 18093 --db "$WORK/soak.db" \
  > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
wait_for http://127.0.0.1:18093/health/liveliness

MASTER=sk-soak-master-0001
KEY=$(curl -fs http://127.0.0.1:18093/key/generate -H "Authorization: Bearer $MASTER" \
  -H 'Content-Type: application/json' -d '{"key_alias": "soak"}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

echo "soak: ${MINUTES} min, ${WORKERS} workers, flaky upstreams on 18090/18091, fallback on 18092, junk on 18094, absurd usage on 18095"
python3 bench/soak_load.py 127.0.0.1 18093 "$KEY" "$SECONDS_TOTAL" "$WORKERS" > "$WORK/load.json" &
LOAD_PID=$!
PIDS+=($LOAD_PID)

START=$(date +%s)
: > "$WORK/rss.txt"
while kill -0 "$LOAD_PID" 2>/dev/null; do
  echo "$(( $(date +%s) - START )) $(ps -o rss= -p "$PROXY_PID" | tr -d ' ')" >> "$WORK/rss.txt"
  sleep 5
done
wait "$LOAD_PID"

# Reports over the soak's day, absurd rows included, while the gateway still runs.
DAY=$(date -u +%F)
NEXT=$(date -u -d tomorrow +%F)
REPORT=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $MASTER" \
  "http://127.0.0.1:18093/global/spend/report?start_date=$DAY&end_date=$DAY&group_by=model")
SUMMARY=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $MASTER" \
  "http://127.0.0.1:18093/spend/logs?start_date=$DAY&end_date=$NEXT")

# Graceful stop: in-flight requests finish and the spend queue is flushed before exit.
kill -TERM "$PROXY_PID"
for _ in $(seq 1 600); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PROXY_PID" 2>/dev/null; then echo "gateway did not stop within 60 s" >&2; exit 1; fi

python3 - "$WORK" "$SECONDS_TOTAL" "$REPORT" "$SUMMARY" <<'PY'
import json, os, sqlite3, sys
work, total, report, summary = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
load = json.load(open(os.path.join(work, "load.json")))
samples = [tuple(map(int, l.split())) for l in open(os.path.join(work, "rss.txt")) if len(l.split()) == 2]
ref_at = 60 if total >= 120 else total // 2
ref = next((kb for t, kb in samples if t >= ref_at), samples[0][1] if samples else 0)
last = samples[-1][1] if samples else 0
rows = None
spend_check = "the store file is missing"
db = os.path.join(work, "soak.db")
if os.path.exists(db):
    try:
        con = sqlite3.connect(db)
        rows = con.execute("SELECT count(*) FROM idlehands_spend_logs").fetchone()[0]
        by_status = dict(con.execute("SELECT status, count(*) FROM idlehands_spend_logs GROUP BY status").fetchall())
        token, key_spend = con.execute(
            "SELECT token, spend FROM idlehands_verification_tokens WHERE key_alias = 'soak'").fetchone()
        # Python integers: exact however large (SQLite's SUM() would stop at i64).
        row_spend = sum(r[0] for r in con.execute("SELECT spend FROM idlehands_spend_logs WHERE api_key = ?", (token,)))
        max_spend, max_tokens = con.execute(
            "SELECT max(spend), max(max(prompt_tokens, completion_tokens, total_tokens)) FROM idlehands_spend_logs").fetchone()
        spend_check = None
    except Exception as e:  # a missing table or key: the check cannot run, which is a failure
        rows, spend_check = None, f"{type(e).__name__}: {e}"
print(f"answered {load['answered']} requests ({load['answered'] / max(total, 1):.0f}/s), routed {load['routed']} "
      f"(hung up mid-stream {load['hangups']}): statuses {load['statuses']}, junk group {load['junk_statuses']}, "
      f"refused {load['refused']}, broken streams {load['stream_errors']}, transport errors {load['transport_errors']}")
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
check(set(load["junk_statuses"]) <= {"200", "502"}, f"junk upstream answers reach clients as 200 or 502 ({load['junk_statuses']})")
expected = {"wrong_key": "401", "oversized_body": "413", "oversized_metadata": "400"}
wrong = {k: v for k, v in load["refused"].items() if k.split()[1] != expected.get(k.split()[0])}
kinds = {k.split()[0] for k in load["refused"]}
check(not wrong and kinds == set(expected), f"refusals have their status ({load['refused']})")
check(last <= ref * 1.2, "memory flat (last sample within 20% of the reference)")
check(report == "200" and summary == "200", f"spend report and day summary answer 200 ({report}, {summary})")
if spend_check is not None:
    check(False, f"spend rows == requests routed: cannot run ({spend_check})")
else:
    check(rows == load["routed"], f"spend rows == requests routed ({rows} rows {by_status}, {load['routed']} routed)")
    check(key_spend == min(row_spend, 2**63 - 1), f"key spend == sum of its rows ({key_spend} == {row_spend} nano-USD)")
    check(max_spend <= 10**15 and max_tokens <= 10**12,
          f"no row above the ceilings (max spend {max_spend} nano-USD, max tokens {max_tokens})")
sys.exit(0 if ok else 1)
PY
