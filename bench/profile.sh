#!/usr/bin/env bash
# Instructions per request on the hot path, counted by callgrind (valgrind): unlike req/s these do
# not move with the machine's load, so a change to the hot path can be judged on a shared machine.
# Usage: bench/profile.sh [requests]   (needs valgrind; default 3000 requests a path)
# Runs nginx proxy_pass (bench/nginx.conf, when installed), bare-forward (the framework floor), the gateway with the master key and with a virtual key
# (spend logging on), each under callgrind behind the same fake upstream, one connection, and
# prints user-space instructions per request (all threads) and the top functions of the
# virtual-key run. BENCH_KEEP=dir keeps the callgrind files there for callgrind_annotate.
# BENCH_STREAMS=1 profiles streaming instead: the gateway on a virtual key relaying
# BENCH_STREAM_CONC (20) paced streams of 200 chunks (one every 10 ms), under callgrind for
# instructions per chunk, then again under `strace -c -f` for system calls per chunk; the
# breakdown is of the streaming run.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-3000}"
WORK=$(mktemp -d)
KEEP="${BENCH_KEEP:-}"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# BENCH_BIN=dir profiles binaries built elsewhere (an earlier commit's, to compare).
BIN="${BENCH_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release --quiet -p idlehands-cli -p idlehands-testkit --bins
  BIN=target/release
fi
STREAMS="${BENCH_STREAMS:-}"
SCONC="${BENCH_STREAM_CONC:-20}"
SCHUNKS=200
# Paced streams only change streamed answers; the request paths get the same plain ones.
$BIN/fake-upstream 127.0.0.1:18180 --stream-every-ms 10 --stream-secs 2 > "$WORK/fake.log" 2>&1 &

# Up once it answers at all (nginx passes /health/liveliness on to the upstream, which has none).
wait_for() { for _ in $(seq 1 600); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" != 000 ] && return 0; sleep 0.05; done; echo "not up: $1" >&2; return 1; }
wait_for http://127.0.0.1:18180/v1/models

sed 's/18080/18180/' bench/proxy.yaml > "$WORK/proxy.yaml"

# One keep-alive connection sending N requests in turn (the client's cost is not counted: only
# the process under callgrind is).
drive() { # url key requests
  python3 - "$1" "$2" "$3" <<'PY'
import http.client, sys, urllib.parse
url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = "Bearer " + key
body = b'{"model":"bench-model","messages":[{"role":"user","content":"Say hello"}]}'
ok = 0
for _ in range(n):
    conn.request("POST", u.path, body, headers)
    r = conn.getresponse()
    r.read()
    ok += r.status == 200
print(ok)
PY
}

stream() { # port key: SCONC paced streams at once, checked chunk by chunk
  $BIN/stream-load --url "http://127.0.0.1:$1/v1/chat/completions" --key "$2" \
    --concurrency "$SCONC" --expect "$SCHUNKS" --ramp-ms 200 --label profile 2>&1
}

new_key() { # port
  curl -fs -X POST "http://127.0.0.1:$1/key/generate" -H "Authorization: Bearer sk-bench-master-0001" \
    -H 'Content-Type: application/json' -d '{"key_alias":"bench","max_budget":1000000}' |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])'
}

measure() { # name port cmd...
  local name=$1 port=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.%p.cg" --dump-instr=no \
    --collect-atstart=yes "$@" > "$WORK/$name.log" 2>&1 &
  local pid=$!
  wait_for "http://127.0.0.1:$port/health/liveliness"
  local key=""
  if [ "$name" = idlehands-vkey ]; then
    key=$(new_key "$port")
  elif [ "$name" = idlehands-master ]; then
    key=sk-bench-master-0001
  fi
  drive "http://127.0.0.1:$port/v1/chat/completions" "$key" 300 > /dev/null # warm caches and pools
  callgrind_control -z "$pid" > /dev/null
  local done_n
  if [ -n "$STREAMS" ]; then
    stream "$port" "$key" > /dev/null
    done_n=$(( SCONC * SCHUNKS ))
  else
    done_n=$(drive "http://127.0.0.1:$port/v1/chat/completions" "$key" "$N")
  fi
  callgrind_control -d "$pid" > /dev/null
  sleep 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # The dump after zeroing holds the measured requests (a .<n> suffix per dump).
  local total=0
  for f in "$WORK/$name".*.cg*; do
    case "$f" in *.cg) continue ;; esac # the final dump at exit includes shutdown
    local ir
    ir=$(grep -m1 '^summary:' "$f" | awk '{print $2}')
    total=$((total + ${ir:-0}))
  done
  echo "$name $done_n $total" >> "$WORK/results"
  [ -n "$KEEP" ] && mkdir -p "$KEEP" && cp "$WORK/$name".*.cg* "$KEEP/" || true
}

sed -e 's/18080/18180/; s/18081/18184/; s|/tmp/idlehands-bench-nginx|/tmp/idlehands-profile-nginx|' bench/nginx.conf > "$WORK/nginx.conf"
if [ -n "$STREAMS" ]; then
  measure idlehands-vkey 18182 $BIN/idlehands proxy --config "$WORK/proxy.yaml" --host 127.0.0.1 --port 18182 --db "$WORK/v.db"
  # System calls are not in callgrind's count: the same run under strace, counted per chunk.
  $BIN/idlehands proxy --config "$WORK/proxy.yaml" --host 127.0.0.1 --port 18182 --db "$WORK/s.db" > "$WORK/s.log" 2>&1 &
  spid=$!
  wait_for http://127.0.0.1:18182/health/liveliness
  skey=$(new_key 18182)
  stream 18182 "$skey" > /dev/null # warm
  strace -c -f -q -o "$WORK/strace.txt" -p "$spid" &
  tpid=$!
  sleep 1
  stream 18182 "$skey" | grep RESULT || true
  kill -INT "$tpid"; wait "$tpid" 2>/dev/null || true
  kill "$spid"; wait "$spid" 2>/dev/null || true
  echo "System calls per chunk (strace -c -f, $SCONC streams x $SCHUNKS chunks, the calls' own requests included):"
  echo
  echo "| system call | calls / chunk |"
  echo "|---|---:|"
  awk -v n=$(( SCONC * SCHUNKS )) '$1 ~ /^[0-9.]+$/ && NF >= 5 { name=$NF; calls=$4; printf "| %s | %.2f |\n", name, calls / n }' "$WORK/strace.txt" | sort -t'|' -k3 -rn | head -12
  echo
elif command -v nginx > /dev/null; then
  measure nginx 18184 nginx -g 'master_process off;' -c "$WORK/nginx.conf"
fi
[ -n "$STREAMS" ] || measure bare-forward 18183 $BIN/bare-forward 127.0.0.1:18183 http://127.0.0.1:18180
[ -n "$STREAMS" ] || measure idlehands-master 18182 $BIN/idlehands proxy --config "$WORK/proxy.yaml" --host 127.0.0.1 --port 18182 --db "$WORK/m.db"
[ -n "$STREAMS" ] || measure idlehands-vkey 18182 $BIN/idlehands proxy --config "$WORK/proxy.yaml" --host 127.0.0.1 --port 18182 --db "$WORK/v.db"

unit=request what="one connection, $N requests"
[ -n "$STREAMS" ] && unit=chunk what="$SCONC streams x $SCHUNKS chunks, the calls' own requests included"
echo "Instructions per $unit (callgrind, user space, all threads, $what)"
echo
echo "| path | ${unit}s | instructions / $unit |"
echo "|---|---:|---:|"
while read -r name n ir; do
  echo "| $name | $n | $(( ir / (n > 0 ? n : 1) )) |"
done < "$WORK/results"
echo
echo "Where the virtual-key run's instructions go (self cost per $unit, by crate or library, then by function):"
echo
# callgrind_annotate's per-function view folds everything into the threads' entry points here;
# this reads the file's own cost lines (fn= / calls= / cost) instead.
python3 - "$(awk '$1 == "idlehands-vkey" {print $2}' "$WORK/results")" "$unit" "$WORK"/idlehands-vkey.*.cg.* <<'PY'
import collections, re, sys
n = max(int(sys.argv[1] or 1), 1)
unit = sys.argv[2]
own = collections.Counter()
for path in sys.argv[3:]:
    names, fn, skip = {}, None, False
    for line in open(path, errors="replace"):
        if line.startswith(("fn=", "cfn=")):
            tok = line.split("=", 1)[1].strip()
            m = re.match(r"\((\d+)\)(?:\s+(.*))?", tok)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                tok = names.get(m.group(1), tok)
            if line.startswith("fn="):
                fn = tok
        elif line.startswith("calls="):
            skip = True  # the next cost line is the callee's inclusive cost
        elif line[:1].isdigit() or line[:1] in "+-*":
            if skip:
                skip = False
                continue
            parts = line.split()
            if fn and len(parts) > 1 and parts[1].isdigit():
                own[fn] += int(parts[1])
total = sum(own.values()) or 1
group = collections.Counter()
for f, c in own.items():
    m = re.match(r"<?([A-Za-z_][A-Za-z0-9_]*)::", f)
    group[m.group(1) if m else ("sqlite" if re.match(r"(sqlite3|vdbe|balance|wal|btree|pager)", f, re.I) else f.split(" ")[0][:32])] += c
print(f"| crate or library | instructions / {unit} | share |\n|---|---:|---:|")
for k, c in group.most_common(15):
    print(f"| {k} | {c // n} | {100 * c / total:.1f}% |")
print(f"\n| function | instructions / {unit} |\n|---|---:|")
for f, c in own.most_common(25):
    print(f"| `{f[:110]}` | {c // n} |")
PY
