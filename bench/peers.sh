#!/usr/bin/env bash
# Peers in one run: the same fake upstream straight (direct), behind nginx proxy_pass, behind
# bare-forward (tokio + hyper + axum forwarding, no gateway logic), behind `idlehands proxy` on
# a virtual key with spend logging, behind LiteLLM's proxy (PyPI, as bench/litellm.sh runs it:
# one uvicorn worker, no database) and behind Portkey's open-source gateway
# (@portkey-ai/gateway from npm, Node, told the upstream per request with x-portkey-provider:
# openai and x-portkey-custom-host). wrk on loopback: req/s, p50/p99 per connection count, each
# point the median of BENCH_ROUNDS rounds with the peers taking turns; per peer the start-up
# time to its first answer and RSS idle and after the load (all processes of the peer).
# Usage: bench/peers.sh [seconds-per-point=10]
#   BENCH_CONNS ("1 32"), BENCH_ROUNDS (3), BENCH_PEERS ("nginx bare-forward idlehands litellm
#   portkey": leave out what cannot run here), BENCH_BIN (target/release).
#   LiteLLM goes into ${LITELLM_VENV:-$HOME/.cache/idlehands-bench/litellm-venv} and Portkey
#   into ${PORTKEY_DIR:-$HOME/.cache/idlehands-bench/portkey} on the first run (unpinned, like
#   bench/litellm.sh; PORTKEY_VERSION pins it), reused after; nothing is committed.
# Needs wrk, nginx (apt install wrk nginx-light), python3 with venv, node/npm for Portkey.
# Ports 18120-18125. Prints markdown tables; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10}"
CONNS="${BENCH_CONNS:-1 32}"
ROUNDS="${BENCH_ROUNDS:-3}"
PEERS="${BENCH_PEERS:-nginx bare-forward idlehands litellm portkey}"
BIN="${BENCH_BIN:-target/release}"
VENV="${LITELLM_VENV:-$HOME/.cache/idlehands-bench/litellm-venv}"
PKDIR="${PORTKEY_DIR:-$HOME/.cache/idlehands-bench/portkey}"
MASTER=sk-bench-master-0001
for b in idlehands fake-upstream bare-forward; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b: cargo build --release -p idlehands-cli -p idlehands-testkit --bins" >&2; exit 1; }
done
command -v wrk > /dev/null || { echo "needs wrk (apt install wrk)" >&2; exit 1; }
has() { [[ " $PEERS " == *" $1 "* ]]; }
has nginx && { command -v nginx > /dev/null || { echo "needs nginx (apt install nginx-light), or leave it out of BENCH_PEERS" >&2; exit 1; }; }

# Installs first, so their time is not taken for start-up.
if has litellm; then
  [ -x "$VENV/bin/python" ] || { mkdir -p "$(dirname "$VENV")"; python3 -m venv "$VENV"; }
  [ -x "$VENV/bin/litellm" ] || "$VENV/bin/pip" install -q 'litellm[proxy]'
  echo "litellm $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')" >&2
fi
PK_START="$PKDIR/node_modules/@portkey-ai/gateway/build/start-server.js"
if has portkey; then
  command -v npm > /dev/null || { echo "needs node and npm for Portkey, or leave it out of BENCH_PEERS" >&2; exit 1; }
  if [ ! -f "$PK_START" ]; then
    mkdir -p "$PKDIR"
    (cd "$PKDIR" && npm install --no-audit --no-fund "@portkey-ai/gateway${PORTKEY_VERSION:+@$PORTKEY_VERSION}" > /dev/null)
  fi
  echo "portkey gateway $(node -p "require('$PKDIR/node_modules/@portkey-ai/gateway/package.json').version"), node $(node --version)" >&2
fi

WORK=$(mktemp -d)
SIDS=()
cleanup() {
  for s in ${SIDS[@]+"${SIDS[@]}"}; do kill -- "-$s" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Each peer runs in a session of its own (setsid): its RSS is summed over the session (nginx's
# master and worker, LiteLLM's and Node's children) and it is ended as a whole.
declare -A SID STARTUP IDLE
rss() { ps -o rss= -s "$1" | awk '{s += $1} END {print s + 0}'; }
launch() { # name probe-url command...: starts it, waits for the probe, notes start-up and RSS
  local name=$1 probe=$2; shift 2
  local t0; t0=$(date +%s%N)
  setsid "$@" > "$WORK/$name.log" 2>&1 &
  local sid=$!
  SIDS+=("$sid"); SID[$name]=$sid
  for _ in $(seq 1 6000); do  # up to 60 s (LiteLLM takes seconds)
    curl -fs -o /dev/null "$probe" && break
    kill -0 "$sid" 2>/dev/null || { echo "$name exited at start; its log:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
    sleep 0.01
  done
  curl -fs -o /dev/null "$probe" || { echo "$name did not come up; its log:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
  STARTUP[$name]=$(( ($(date +%s%N) - t0) / 1000000 ))
  IDLE[$name]=$(rss "$sid")
}

launch direct http://127.0.0.1:18120/v1/models "$BIN/fake-upstream" 127.0.0.1:18120
if has nginx; then
  sed -e 's/127.0.0.1:18080/127.0.0.1:18120/' -e 's/127.0.0.1:18081/127.0.0.1:18121/' \
      -e "s|/tmp/idlehands-bench-nginx.pid|$WORK/nginx.pid|" -e "s|/tmp/idlehands-bench-nginx.err|$WORK/nginx.err|" \
      bench/nginx.conf > "$WORK/nginx.conf"
  launch nginx http://127.0.0.1:18121/v1/models nginx -c "$WORK/nginx.conf"
fi
has bare-forward && launch bare-forward http://127.0.0.1:18123/v1/models "$BIN/bare-forward" 127.0.0.1:18123 http://127.0.0.1:18120
if has idlehands; then
  sed 's/127.0.0.1:18080/127.0.0.1:18120/' bench/proxy.yaml > "$WORK/proxy.yaml"
  launch idlehands http://127.0.0.1:18122/health/liveliness env -u DATABASE_URL "$BIN/idlehands" proxy \
    --config "$WORK/proxy.yaml" --host 127.0.0.1 --port 18122 --db "$WORK/peers.db"
  VKEY=$(curl -fs -X POST http://127.0.0.1:18122/key/generate -H "Authorization: Bearer $MASTER" \
    -H 'Content-Type: application/json' -d '{"key_alias":"peers","max_budget":1000000}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])')
fi
if has litellm; then
  cat > "$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/bench-model
      api_base: http://127.0.0.1:18120/v1
      api_key: sk-bench-upstream
general_settings:
  master_key: $MASTER
YAML
  launch litellm http://127.0.0.1:18124/health/liveliness env -u DATABASE_URL -u DIRECT_URL -u REDIS_HOST -u REDIS_URL \
    LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port 18124
fi
PK_HEADERS="x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:18120/v1"
has portkey && launch portkey http://127.0.0.1:18125/ env NODE_ENV=production node "$PK_START" --port=18125 --headless

# Each peer answers one chat completion before it is measured (and warms up unrecorded).
url_of() { case $1 in direct) echo 18120;; nginx) echo 18121;; idlehands) echo 18122;; bare-forward) echo 18123;; litellm) echo 18124;; portkey) echo 18125;; esac; }
key_of() { case $1 in idlehands) echo "$VKEY";; litellm) echo "$MASTER";; portkey) echo sk-bench-upstream;; *) echo "";; esac; }
hdr_of() { [ "$1" = portkey ] && echo "$PK_HEADERS" || echo ""; }
ALL="direct"; for p in nginx bare-forward idlehands litellm portkey; do has "$p" && ALL="$ALL $p"; done
for p in $ALL; do
  url="http://127.0.0.1:$(url_of "$p")/v1/chat/completions"
  args=(-s -o "$WORK/check.json" -w '%{http_code}' "$url" -H 'Content-Type: application/json'
        -d '{"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]}')
  k=$(key_of "$p"); [ -n "$k" ] && args+=(-H "Authorization: Bearer $k")
  IFS='|' read -ra hs <<< "$(hdr_of "$p")"; for h in ${hs[@]+"${hs[@]}"}; do args+=(-H "$h"); done
  code=$(curl "${args[@]}" || true)
  grep -q 'Hello from the fake provider' "$WORK/check.json" 2>/dev/null && [ "$code" = 200 ] \
    || { echo "$p: chat completion answered $code: $(head -c 300 "$WORK/check.json")" >&2; exit 1; }
  BENCH_KEY="$k" BENCH_HEADERS="$(hdr_of "$p")" wrk -t1 -c4 -d1s -s bench/chat.lua "$url" > /dev/null 2>&1 || true
done

RESULTS="$WORK/results.txt"
for _ in $(seq "$ROUNDS"); do
  for c in $CONNS; do
    for p in $ALL; do
      out=$(BENCH_KEY="$(key_of "$p")" BENCH_HEADERS="$(hdr_of "$p")" BENCH_STREAM=0 \
        wrk -t "$(( c < 2 ? 1 : 2 ))" -c "$c" -d "${DUR}s" --latency -s bench/chat.lua \
        "http://127.0.0.1:$(url_of "$p")/v1/chat/completions" 2>&1 | grep RESULT \
        || echo "RESULT rps=0 p50_us=0 p99_us=0 errors=-1 requests=0")
      echo "$p $c $out" >> "$RESULTS"
    done
  done
done
: > "$WORK/peers.txt"
for p in $ALL; do
  kill -0 "${SID[$p]}" 2>/dev/null || echo "warning: $p exited during the run; its rows are void" >&2
  echo "$p ${STARTUP[$p]} ${IDLE[$p]} $(rss "${SID[$p]}") $(ps -o pid= -s "${SID[$p]}" | wc -l)" >> "$WORK/peers.txt"
done

python3 - "$RESULTS" "$WORK/peers.txt" "$DUR" <<'PY'
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, "bench")
from medians import medians, print_table
path, peers, dur = sys.argv[1:]
rows, rounds = medians(path)
print(f"\nPeers, {dur}s per point, median of {rounds} rounds, wrk on loopback, one run\n")
print_table(rows)
conns = sorted({c for _, c in rows})
print("\n| peer | start-up ms | RSS idle MB | RSS after MB | processes | " + " | ".join(f"% of nginx req/s @{c}" for c in conns) + " |")
print("|---|---:|---:|---:|---:|" + "---:|" * len(conns))
for line in open(peers):
    name, start, idle, after, procs = line.split()
    pct = []
    for c in conns:
        r, n = rows.get((name, c)), rows.get(("nginx", c))
        pct.append(f"{100 * r['rps'] / n['rps']:.{0 if r['rps'] >= n['rps'] / 10 else 1}f}%" if r and n and n["rps"] else "")
    print(f"| {name} | {start} | {int(idle) / 1024:.0f} | {int(after) / 1024:.0f} | {procs} | " + " | ".join(pct) + " |")
PY
