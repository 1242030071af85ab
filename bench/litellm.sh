#!/usr/bin/env bash
# Side-by-side load benchmark: direct fake upstream vs `idlehands proxy` vs LiteLLM's own proxy,
# the same model_list and master key for both gateways, measured in one run on this machine.
# Usage: bench/litellm.sh [seconds-per-point]   (needs wrk, python3 with venv, and PyPI access)
# LiteLLM is installed from PyPI at run time (`pip install 'litellm[proxy]'`, unpinned) into a
# venv outside the repo, ${LITELLM_VENV:-$HOME/.cache/idlehands-bench/litellm-venv}, created on
# the first run and reused after; nothing it installs is committed. LiteLLM runs with its
# default server settings (uvicorn, --num_workers 1), no database, LITELLM_LOG=ERROR and the
# bundled model cost map (LITELLM_LOCAL_MODEL_COST_MAP=True, so start-up fetches nothing).
# BENCH_CONNS (default "1 32") picks the connection counts; BENCH_ROUNDS (default 3) how many
# times every point is measured, the paths taking turns, and the table shows each point's
# median round. BENCH_PORT_WAIT (default 600) is how many seconds to wait for ports
# 18080/18082/18084 to be free (another bench may hold them) before giving up.
# Uses target/release/{idlehands,fake-upstream} as built (cargo build --release -p idlehands-cli
# -p idlehands-testkit --bins). Prints a markdown table and ratios; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
CONNS="${BENCH_CONNS:-1 32}"
ROUNDS="${BENCH_ROUNDS:-3}"
VENV="${LITELLM_VENV:-$HOME/.cache/idlehands-bench/litellm-venv}"
PORT_WAIT="${BENCH_PORT_WAIT:-600}"
BIN=target/release
for b in idlehands fake-upstream; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p idlehands-cli -p idlehands-testkit --bins" >&2; exit 1; }
done
command -v wrk > /dev/null || { echo "needs wrk (apt install wrk)" >&2; exit 1; }

# LiteLLM from PyPI into a venv of its own.
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q 'litellm[proxy]'
LITELLM_VERSION=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')
echo "litellm $LITELLM_VERSION ($VENV)"

# The ports must be free: another session's bench may be holding them.
listening() { ss -ltnH "( sport = :18080 or sport = :18082 or sport = :18084 )" | awk '{print $4}' | tr '\n' ' '; }
waited=0
while [ -n "$(listening)" ]; do
  if [ "$waited" -ge "$PORT_WAIT" ]; then
    echo "ports still in use after ${PORT_WAIT}s: $(listening)-- is another bench running?" >&2; exit 1
  fi
  [ "$waited" -eq 0 ] && echo "waiting for ports in use to be free: $(listening)" >&2
  sleep 5; waited=$((waited + 5))
done

WORK=$(mktemp -d)
PIDS=()
LITELLM_PID=
cleanup() {
  if [ -n "$LITELLM_PID" ]; then kill -- "-$LITELLM_PID" 2>/dev/null || true; fi
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

$BIN/fake-upstream 127.0.0.1:18080 > "$WORK/fake.log" 2>&1 &
PIDS+=($!)

wait_for() { # url tries interval-s
  for _ in $(seq 1 "$2"); do curl -fs -o /dev/null "$1" && return 0; sleep "$3"; done
  echo "not up: $1" >&2; return 1
}
wait_for http://127.0.0.1:18080/v1/models 200 0.01

start=$(date +%s%N)
$BIN/idlehands proxy --config bench/proxy.yaml --host 127.0.0.1 --port 18082 --db "$WORK/bench.db" > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)
wait_for http://127.0.0.1:18082/health/liveliness 200 0.01
ih_startup_ms=$(( ($(date +%s%N) - start) / 1000000 ))

# The same deployment and master key as bench/proxy.yaml, no database.
cat > "$WORK/litellm.yaml" <<'YAML'
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: http://127.0.0.1:18080/v1
      api_key: sk-bench-upstream
general_settings:
  master_key: sk-bench-master-0001
YAML
# setsid: LiteLLM and anything it spawns share one session, summed for RSS and ended together.
start=$(date +%s%N)
env -u DATABASE_URL -u DIRECT_URL -u REDIS_HOST -u REDIS_URL \
  LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True \
  setsid "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port 18084 > "$WORK/litellm.log" 2>&1 &
LITELLM_PID=$!
up=0
for _ in $(seq 1 1200); do  # up to 120 s
  curl -fs -o /dev/null http://127.0.0.1:18084/health/liveliness && { up=1; break; }
  kill -0 "$LITELLM_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$up" != 1 ]; then
  echo "LiteLLM did not come up on :18084; its log:" >&2; tail -40 "$WORK/litellm.log" >&2; exit 1
fi
lt_startup_ms=$(( ($(date +%s%N) - start) / 1000000 ))

BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]}'
for port in 18082 18084; do
  code=$(curl -s -o "$WORK/check.json" -w '%{http_code}' "http://127.0.0.1:$port/v1/chat/completions" \
    -H 'Authorization: Bearer sk-bench-master-0001' -H 'Content-Type: application/json' -d "$BODY" || true)
  if [ "$code" != 200 ]; then
    echo "chat completion through :$port returned $code:" >&2; cat "$WORK/check.json" >&2; echo >&2
    [ "$port" = 18084 ] && tail -40 "$WORK/litellm.log" >&2
    exit 1
  fi
done

rss_ih() { ps -o rss= -p "$PROXY_PID" | tr -d ' '; }
rss_lt() { ps -o rss= -s "$LITELLM_PID" | awk '{s += $1} END {print s + 0}'; }
ih_idle_kb=$(rss_ih); lt_idle_kb=$(rss_lt)

# A short unrecorded warm-up per gateway (first requests import and connect lazily).
for port in 18082 18084; do
  BENCH_KEY=sk-bench-master-0001 wrk -t1 -c4 -d2s -s bench/chat.lua "http://127.0.0.1:$port/v1/chat/completions" > /dev/null 2>&1 || true
done

point() { # name url key conns
  local out
  out=$(BENCH_KEY="$3" BENCH_STREAM=0 wrk -t "$(( $4 < 2 ? 1 : 2 ))" -c "$4" -d "${DUR}s" --latency -s bench/chat.lua "$2" 2>&1 | grep RESULT || echo "RESULT rps=0 p50_us=0 p99_us=0 errors=-1 requests=0")
  echo "$1 $4 $out"
}

RESULTS="$WORK/results.txt"
for _ in $(seq "$ROUNDS"); do
for c in $CONNS; do
  point direct http://127.0.0.1:18080/v1/chat/completions "" "$c" >> "$RESULTS"
  point idlehands-master http://127.0.0.1:18082/v1/chat/completions sk-bench-master-0001 "$c" >> "$RESULTS"
  point litellm-master http://127.0.0.1:18084/v1/chat/completions sk-bench-master-0001 "$c" >> "$RESULTS"
done
done
for p in ${PIDS[@]+"${PIDS[@]}"} "$LITELLM_PID"; do
  kill -0 "$p" 2>/dev/null || echo "warning: process $p (started here) exited during the run; its rows are void" >&2
done
ih_loaded_kb=$(rss_ih || echo 0); lt_loaded_kb=$(rss_lt)
lt_procs=$(ps -o pid= -s "$LITELLM_PID" | wc -l)

python3 - "$RESULTS" "$DUR" "$LITELLM_VERSION" "$lt_procs" \
  "$ih_startup_ms" "$ih_idle_kb" "$ih_loaded_kb" "$lt_startup_ms" "$lt_idle_kb" "$lt_loaded_kb" <<'PY'
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, "bench")
from medians import medians, print_table
path, dur, version, procs, ih_start, ih_idle, ih_loaded, lt_start, lt_idle, lt_loaded = sys.argv[1:]
rows, rounds = medians(path)
print(f"\nidlehands proxy vs LiteLLM {version} proxy (uvicorn, 1 worker, no DB), {dur}s per point, "
      f"median of {rounds} rounds, wrk on loopback, this machine, one run\n")
print_table(rows)
print()
for c in sorted({c for _, c in rows}):
    d = rows.get(("direct", c)); ih = rows.get(("idlehands-master", c)); lt = rows.get(("litellm-master", c))
    if ih and lt and lt["rps"]:
        print(f"- @ {c} conns: idlehands req/s ÷ LiteLLM req/s = {ih['rps']/lt['rps']:.1f}x")
    if d:
        for name, r in (("idlehands", ih), ("LiteLLM", lt)):
            if r:
                print(f"  - {name} added p50 vs direct: {r['p50_us']-d['p50_us']:.0f} µs")
mb = lambda kb: int(kb) / 1024
print(f"\n- RSS idle: idlehands {mb(ih_idle):.0f} MB, LiteLLM {mb(lt_idle):.0f} MB ({procs} process(es)); "
      f"after load: idlehands {mb(ih_loaded):.0f} MB, LiteLLM {mb(lt_loaded):.0f} MB")
print(f"- start-up to first liveliness answer: idlehands {ih_start} ms, LiteLLM {lt_start} ms "
      f"({int(lt_start)/max(int(ih_start),1):.0f}x)")
PY
