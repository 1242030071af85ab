#!/usr/bin/env bash
# Load benchmark: direct upstream vs nginx proxy_pass vs `idlehands proxy`, measured in one run
# (plus bare-forward: tokio/hyper/axum forwarding with no gateway logic, the framework's floor)
# on this machine. Usage: bench/run.sh [seconds-per-point]   (needs wrk and nginx: apt install wrk nginx-light)
# BENCH_CONNS (default "1 32 256") picks the connection counts; BENCH_ROUNDS (default 3) how
# many times every point is measured, the paths taking turns, and the table shows each point's
# median round: on a shared machine one round alone can be off by a third.
# BENCH_BIN=dir runs binaries built elsewhere. Prints a markdown table and ratios; nothing here
# is asserted by the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
CONNS="${BENCH_CONNS:-1 32 256}"
ROUNDS="${BENCH_ROUNDS:-3}"
WORK=$(mktemp -d)
# nginx may remove its pid file as the jobs are killed: nothing here may fail the run.
trap 'kill $(jobs -p) 2>/dev/null || true; p=$(cat /tmp/idlehands-bench-nginx.pid 2>/dev/null || true); [ -n "$p" ] && kill "$p" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# BENCH_BIN=dir runs binaries built elsewhere (an earlier commit's, to compare on one machine).
BIN="${BENCH_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release --quiet -p idlehands-cli -p idlehands-testkit --bins
  BIN=target/release
fi

$BIN/fake-upstream 127.0.0.1:18080 > "$WORK/fake.log" 2>&1 &
nginx -c "$PWD/bench/nginx.conf" > "$WORK/nginx.log" 2>&1 &
# The floor: tokio + hyper + axum forwarding with no gateway logic (crates/testkit/src/bin).
$BIN/bare-forward 127.0.0.1:18083 http://127.0.0.1:18080 > "$WORK/bare.log" 2>&1 &

wait_for() { for _ in $(seq 1 200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.01; done; echo "not up: $1" >&2; return 1; }

start=$(date +%s%N)
$BIN/idlehands proxy --config bench/proxy.yaml --host 127.0.0.1 --port 18082 --db "$WORK/bench.db" > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
wait_for http://127.0.0.1:18082/health/liveliness
startup_ms=$(( ($(date +%s%N) - start) / 1000000 ))
wait_for http://127.0.0.1:18080/v1/models
wait_for http://127.0.0.1:18083/v1/models
idle_rss_kb=$(ps -o rss= -p $PROXY_PID | tr -d ' ')

# A virtual key with a large budget, for the virtual-key path.
VKEY=$(curl -fs -X POST http://127.0.0.1:18082/key/generate -H "Authorization: Bearer sk-bench-master-0001" \
  -H 'Content-Type: application/json' -d '{"key_alias":"bench","max_budget":1000000}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])' 2>/dev/null || true)

point() { # name url key stream conns
  local out
  out=$(BENCH_KEY="$3" BENCH_STREAM="$4" wrk -t "$(( $5 < 2 ? 1 : 2 ))" -c "$5" -d "${DUR}s" --latency -s bench/chat.lua "$2" 2>&1 | grep RESULT || echo "RESULT rps=0 p50_us=0 p99_us=0 errors=-1 requests=0")
  echo "$1 $5 $out"
}

RESULTS="$WORK/results.txt"
for _ in $(seq "$ROUNDS"); do
for c in $CONNS; do
  point direct http://127.0.0.1:18080/v1/chat/completions "" 0 "$c" >> "$RESULTS"
  point nginx http://127.0.0.1:18081/v1/chat/completions "" 0 "$c" >> "$RESULTS"
  point bare-forward http://127.0.0.1:18083/v1/chat/completions "" 0 "$c" >> "$RESULTS"
  point idlehands-master http://127.0.0.1:18082/v1/chat/completions sk-bench-master-0001 0 "$c" >> "$RESULTS"
  if [ -n "$VKEY" ]; then
    point idlehands-vkey http://127.0.0.1:18082/v1/chat/completions "$VKEY" 0 "$c" >> "$RESULTS"
  fi
  point direct-stream http://127.0.0.1:18080/v1/chat/completions "" 1 "$c" >> "$RESULTS"
  point idlehands-stream http://127.0.0.1:18082/v1/chat/completions sk-bench-master-0001 1 "$c" >> "$RESULTS"
done
done
loaded_rss_kb=$(ps -o rss= -p $PROXY_PID | tr -d ' ')

python3 - "$RESULTS" "$startup_ms" "$idle_rss_kb" "$loaded_rss_kb" "$DUR" <<'PY'
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, "bench")
from medians import medians, print_table
CHUNKS = 8  # the fake upstream's stream: role, 4 text chunks, finish, usage, [DONE]
path, startup, idle, loaded, dur = sys.argv[1:]
rows, rounds = medians(path)
print(f"Load benchmark, {dur}s per point, median of {rounds} rounds, wrk on loopback, this machine, one run\n")
print_table(rows)
print()
for c in sorted({c for _, c in rows}):
    ng = rows.get(("nginx", c)); d = rows.get(("direct", c))
    for name in ("bare-forward", "idlehands-master", "idlehands-vkey"):
        r = rows.get((name, c))
        if r and ng and ng["rps"]:
            print(f"- {name} @ {c} conns: {100*r['rps']/ng['rps']:.0f}% of nginx req/s; "
                  f"added p50 vs direct: {r['p50_us']-d['p50_us']:.0f} µs")
    s = rows.get(("idlehands-stream", c)); ds = rows.get(("direct-stream", c))
    if s and ds:
        added = s['p50_us'] - ds['p50_us']
        print(f"- streaming @ {c} conns: added p50 vs direct {added:.0f} µs per request, "
              f"{added / CHUNKS:.0f} µs per chunk ({CHUNKS} SSE events a stream)")
    m = rows.get(("idlehands-master", c)); v = rows.get(("idlehands-vkey", c))
    if m and v and m["rps"]:
        print(f"- virtual key vs master key @ {c} conns: {100*v['rps']/m['rps']:.0f}%")
print(f"\nstart-up to first liveliness answer: {startup} ms; RSS idle {int(idle)//1024} MB, after load {int(loaded)//1024} MB")
PY
