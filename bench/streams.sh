#!/usr/bin/env bash
# Long streams: C concurrent streaming chat completions, each a chunk every 100 ms for S
# seconds (fake-upstream --stream-every-ms/--stream-secs), first straight to the fake upstream,
# then through `idlehands proxy` on virtual keys. stream-load (crates/testkit) checks that every
# call answers 200 with every chunk in order and [DONE], and measures how late each chunk
# arrives against the time the upstream scheduled it; the gateway's added per-chunk latency is
# the through-gateway figure minus the direct one. Also: the gateway's peak RSS while the
# streams run, and its spend rows (one per call, read back from /global/spend/report).
# Usage: bench/streams.sh [concurrency=1000] [seconds=30]
#   BENCH_EVERY_MS (100) chunk interval; BENCH_KEYS (100) virtual keys the calls take turns on;
#   BENCH_RAMP_MS (1 ms per stream, at least 1000) how long the connects are spread over;
#   BENCH_BIN (target/release) where idlehands, fake-upstream and stream-load are
#   (cargo build --release -p idlehands-cli -p idlehands-testkit --bins);
#   BENCH_LITELLM_CONC=N also runs N streams through LiteLLM's proxy (the venv bench/litellm.sh
#   makes, ${LITELLM_VENV:-$HOME/.cache/idlehands-bench/litellm-venv}; it must exist).
# Each stream holds one client connection and two at the gateway: the open-file limit (per
# process) is raised to fit (10,000 streams need about 20,300; as root `ulimit -n` can raise the
# hard limit too, where the container allows it).
# Ports 18090 (upstream), 18092 (gateway), 18094 (LiteLLM). Nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
C="${1:-1000}"
SECS="${2:-30}"
EVERY="${BENCH_EVERY_MS:-100}"
NKEYS="${BENCH_KEYS:-100}"
RAMP="${BENCH_RAMP_MS:-$(( C < 1000 ? 1000 : C ))}"
BIN="${BENCH_BIN:-target/release}"
CHUNKS=$(( SECS * 1000 / EVERY )); [ "$CHUNKS" -ge 1 ] || CHUNKS=1
for b in idlehands fake-upstream stream-load; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p idlehands-cli -p idlehands-testkit --bins" >&2; exit 1; }
done
# The gateway holds two descriptors per stream (client and upstream), the others one each: the
# per-process limit must fit the gateway's.
need=$(( 2 * C + 256 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "open-file limit $(ulimit -n) is below the $need that $C streams need; raise the hard limit" >&2; exit 1
  fi
fi

WORK=$(mktemp -d)
PIDS=()
LITELLM_PID=
cleanup() {
  if [ -n "$LITELLM_PID" ]; then kill -- "-$LITELLM_PID" 2>/dev/null || true; fi
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_for() { for _ in $(seq 1 500); do curl -fs -o /dev/null "$1" && return 0; sleep 0.02; done; echo "not up: $1" >&2; return 1; }

"$BIN/fake-upstream" 127.0.0.1:18090 --stream-every-ms "$EVERY" --stream-secs "$SECS" > "$WORK/fake.log" 2>&1 &
PIDS+=($!)
sed 's/127.0.0.1:18080/127.0.0.1:18090/' bench/proxy.yaml > "$WORK/proxy.yaml"
"$BIN/idlehands" proxy --config "$WORK/proxy.yaml" --host 127.0.0.1 --port 18092 --db "$WORK/streams.db" > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
wait_for http://127.0.0.1:18090/v1/models
wait_for http://127.0.0.1:18092/health/liveliness
idle_kb=$(ps -o rss= -p "$PROXY_PID" | tr -d ' ')

for i in $(seq 1 "$NKEYS"); do
  curl -fs -X POST http://127.0.0.1:18092/key/generate -H "Authorization: Bearer sk-bench-master-0001" \
    -H 'Content-Type: application/json' -d "{\"key_alias\":\"stream-$i\",\"max_budget\":1000000}" \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])' >> "$WORK/keys.txt"
done

RESULTS="$WORK/results.txt"
load() { # label url pid [stream-load flags...]
  local label=$1 url=$2 pid=$3; shift 3
  "$BIN/stream-load" --url "$url" --concurrency "$C" --expect "$CHUNKS" --ramp-ms "$RAMP" \
    --label "$label" --pid "$pid" "$@" 2> "$WORK/$label.err" | grep RESULT >> "$RESULTS" || true
  sed 's/^/  /' "$WORK/$label.err" >&2
}
echo "streams: $C x ${SECS}s, a chunk every ${EVERY} ms ($CHUNKS chunks each), connects over ${RAMP} ms, $NKEYS virtual keys" >&2
load direct http://127.0.0.1:18090/v1/chat/completions "${PIDS[0]}"
# The gateway's CPU time (user + system, clock ticks) around its run: per chunk, it says how
# many cores a load of this shape needs, whatever else shares the machine.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
cpu_before=$(cpu_ticks "$PROXY_PID")
sys_before=$(sys_ticks "$PROXY_PID")
load idlehands-vkey http://127.0.0.1:18092/v1/chat/completions "$PROXY_PID" --keys-file "$WORK/keys.txt"
cpu_after=$(cpu_ticks "$PROXY_PID" 2>/dev/null || echo "$cpu_before")
sys_after=$(sys_ticks "$PROXY_PID" 2>/dev/null || echo "$sys_before")
gw_cpu_us=$(( (cpu_after - cpu_before) * 1000000 / $(getconf CLK_TCK) ))
gw_sys_us=$(( (sys_after - sys_before) * 1000000 / $(getconf CLK_TCK) ))
kill -0 "$PROXY_PID" 2>/dev/null || echo "warning: the gateway exited during the run" >&2
after_kb=$(ps -o rss= -p "$PROXY_PID" | tr -d ' ' || echo 0)

# One spend row per call: the rows the gateway wrote for today (UTC) over all keys. The
# writer commits in batches, so wait for the count to settle.
rows=0
for _ in $(seq 1 50); do
  # Counted in the store itself: the api_key report (LiteLLM's shape) carries no call count.
  rows=$(python3 - "$WORK/streams.db" <<'PY' || echo 0
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT count(*) FROM idlehands_spend_logs WHERE api_key != ''").fetchone()[0])
PY
)
  [ "$rows" -ge "$C" ] && break
  sleep 0.2
done

if [ -n "${BENCH_LITELLM_CONC:-}" ]; then
  VENV="${LITELLM_VENV:-$HOME/.cache/idlehands-bench/litellm-venv}"
  [ -x "$VENV/bin/litellm" ] || { echo "no LiteLLM in $VENV: run bench/litellm.sh once to make it" >&2; exit 1; }
  cat > "$WORK/litellm.yaml" <<'YAML'
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: http://127.0.0.1:18090/v1
      api_key: sk-bench-upstream
general_settings:
  master_key: sk-bench-master-0001
YAML
  env -u DATABASE_URL -u DIRECT_URL -u REDIS_HOST -u REDIS_URL LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True \
    setsid "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port 18094 > "$WORK/litellm.log" 2>&1 &
  LITELLM_PID=$!
  for _ in $(seq 1 1200); do curl -fs -o /dev/null http://127.0.0.1:18094/health/liveliness && break; sleep 0.1; done
  C_ALL=$C; C=$BENCH_LITELLM_CONC
  load litellm-master http://127.0.0.1:18094/v1/chat/completions "$LITELLM_PID" --key sk-bench-master-0001
  C=$C_ALL
fi

python3 - "$RESULTS" "$idle_kb" "$after_kb" "$rows" "$C" "$gw_cpu_us" "$EVERY" "$gw_sys_us" <<'PY'
import re, sys
path, idle, after, rows, calls, cpu_us, every_ms, sys_us = sys.argv[1:]
runs = {}
for line in open(path):
    kv = dict(re.findall(r"(\w+)=([\w.-]+)", line))
    runs[kv["label"]] = kv
print("| path | streams | ok | errors | chunks / expected | late p50 µs | late p99 µs | late max µs | peak RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, r in runs.items():
    print(f"| {label} | {r['streams']} | {r['ok']} | {r['errors']} | {r['chunks']} / {r['expected_chunks']} | "
          f"{r['p50_us']} | {r['p99_us']} | {r['max_us']} | {int(r['rss_peak_kb']) / 1024:.0f} |")
d, g = runs.get("direct"), runs.get("idlehands-vkey")
if d and g:
    print(f"\n- added per-chunk latency through the gateway: p50 {int(g['p50_us']) - int(d['p50_us'])} µs, "
          f"p99 {int(g['p99_us']) - int(d['p99_us'])} µs (through-gateway lateness minus direct)")
print(f"- gateway RSS: idle {int(idle) / 1024:.0f} MB, peak under load {int(g['rss_peak_kb']) / 1024 if g else 0:.0f} MB, "
      f"after {int(after or 0) / 1024:.0f} MB")
print(f"- spend rows for today: {rows} for {calls} calls through the gateway")
if g and int(g["chunks"]):
    per_chunk = int(cpu_us) / int(g["chunks"])
    print(f"- gateway CPU: {int(cpu_us) / 1e6:.1f} s for {g['chunks']} chunks, {per_chunk:.1f} µs per chunk "
          f"({int(sys_us) / int(g['chunks']):.1f} of them in the kernel; calls, keys and spend rows "
          f"included): {calls} streams at a chunk every {every_ms} ms "
          f"need {per_chunk * int(calls) * (1000 / int(every_ms)) / 1e6:.2f} cores for the gateway alone")
PY
