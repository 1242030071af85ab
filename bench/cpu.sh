#!/usr/bin/env bash
# CPU time per request under load, the gateway's and its peers': on a shared 2-core VM req/s
# moves by a third from round to round, while the CPU a server spends on a request moves far
# less, and at 32 connections req/s follows it (every server shares the two cores with wrk and
# the upstream). Compares two gateway builds, A and B, beside nginx `proxy_pass` and
# bare-forward (the framework floor), taking turns round by round.
# Usage: bench/cpu.sh DIR_A DIR_B [seconds] [rounds]   (defaults 5 s, 5 rounds; wrk and nginx
# as for run.sh). Each DIR holds `idlehands` (A's also `fake-upstream` and `bare-forward`).
# BENCH_CONNS (default 32) connections; BENCH_PATH vkey (default) or master. Prints the
# median round of each: user and system µs a request (all threads, from /proc/<pid>/stat),
# req/s, and each build's CPU against nginx's and bare-forward's. Nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
A="${1:?usage: bench/cpu.sh DIR_A DIR_B [seconds] [rounds]}"
B="${2:?usage: bench/cpu.sh DIR_A DIR_B [seconds] [rounds]}"
DUR="${3:-5}"
ROUNDS="${4:-5}"
CONNS="${BENCH_CONNS:-32}"
WHICH="${BENCH_PATH:-vkey}"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; p=$(cat /tmp/idlehands-bench-nginx.pid 2>/dev/null || true); [ -n "$p" ] && kill "$p" 2>/dev/null || true; rm -rf "$WORK"' EXIT

$A/fake-upstream 127.0.0.1:18080 > "$WORK/fake.log" 2>&1 &
nginx -c "$PWD/bench/nginx.conf" > "$WORK/nginx.log" 2>&1 &
$A/bare-forward 127.0.0.1:18083 http://127.0.0.1:18080 > "$WORK/bare.log" 2>&1 &
BARE_PID=$!
$A/idlehands proxy --config bench/proxy.yaml --host 127.0.0.1 --port 18082 --db "$WORK/a.db" > "$WORK/a.log" 2>&1 &
A_PID=$!
$B/idlehands proxy --config bench/proxy.yaml --host 127.0.0.1 --port 18084 --db "$WORK/b.db" > "$WORK/b.log" 2>&1 &
B_PID=$!

wait_for() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.02; done; echo "not up: $1" >&2; return 1; }
wait_for http://127.0.0.1:18080/v1/models
wait_for http://127.0.0.1:18083/v1/models
wait_for http://127.0.0.1:18082/health/liveliness
wait_for http://127.0.0.1:18084/health/liveliness
wait_for http://127.0.0.1:18081/v1/models
NGINX_PIDS="$(cat /tmp/idlehands-bench-nginx.pid) $(pgrep -P "$(cat /tmp/idlehands-bench-nginx.pid)" | tr '\n' ' ')"

MASTER=sk-bench-master-0001
key() { # port
  if [ "$WHICH" = master ]; then echo "$MASTER"; return; fi
  curl -fs -X POST "http://127.0.0.1:$1/key/generate" -H "Authorization: Bearer $MASTER" \
    -H 'Content-Type: application/json' -d '{"key_alias":"bench","max_budget":1000000}' |
    python3 -c 'import sys,json; print(json.load(sys.stdin)["key"])'
}
A_KEY=$(key 18082)
B_KEY=$(key 18084)

ticks() { # pids...: user and system clock ticks of all their threads
  local u=0 s=0 f
  for p in "$@"; do
    f=$(cut -d')' -f2 "/proc/$p/stat")
    u=$(( u + $(echo "$f" | awk '{print $12}') ))
    s=$(( s + $(echo "$f" | awk '{print $13}') ))
  done
  echo "$u $s"
}

point() { # name url key pids...
  local name=$1 url=$2 k=$3; shift 3
  local before after out
  before=$(ticks "$@")
  out=$(BENCH_KEY="$k" BENCH_STREAM=0 wrk -t "$(( CONNS < 2 ? 1 : 2 ))" -c "$CONNS" -d "${DUR}s" --latency -s bench/chat.lua "$url" 2>&1 | grep RESULT || echo "RESULT rps=0 requests=0")
  after=$(ticks "$@")
  echo "$name $before $after $out" >> "$WORK/points.txt"
}

for _ in $(seq "$ROUNDS"); do
  point nginx http://127.0.0.1:18081/v1/chat/completions "" $NGINX_PIDS
  point bare-forward http://127.0.0.1:18083/v1/chat/completions "" $BARE_PID
  point A http://127.0.0.1:18082/v1/chat/completions "$A_KEY" $A_PID
  point B http://127.0.0.1:18084/v1/chat/completions "$B_KEY" $B_PID
done

python3 - "$WORK/points.txt" "$(getconf CLK_TCK)" "$CONNS" "$DUR" "$WHICH" "$A" "$B" <<'PY'
import re, statistics, sys
path, hz, conns, dur, which, a, b = sys.argv[1:]
hz = int(hz)
runs = {}
for line in open(path):
    name, u0, s0, u1, s1, rest = line.split(maxsplit=5)
    kv = dict(re.findall(r"(\w+)=([\d.]+)", rest))
    n = float(kv.get("requests", 0))
    if n <= 0:
        continue
    us = lambda t: 1e6 * t / hz / n
    runs.setdefault(name, []).append({
        "user": us(int(u1) - int(u0)), "sys": us(int(s1) - int(s0)), "rps": float(kv["rps"])})
print(f"CPU per request, {conns} connections, {dur} s a point, median of {len(runs.get('A', []))} rounds ({which} key for A and B)\n")
print("| server | user µs | system µs | total µs | req/s |")
print("|---|---:|---:|---:|---:|")
med = {}
for name in ("nginx", "bare-forward", "A", "B"):
    r = runs.get(name)
    if not r:
        continue
    m = {k: statistics.median(x[k] for x in r) for k in ("user", "sys", "rps")}
    m["total"] = statistics.median(x["user"] + x["sys"] for x in r)
    med[name] = m
    label = {"A": f"idlehands A ({a})", "B": f"idlehands B ({b})"}.get(name, name)
    print(f"| {label} | {m['user']:.1f} | {m['sys']:.1f} | {m['total']:.1f} | {m['rps']:.0f} |")
print()
for name in ("A", "B"):
    if name in med and "nginx" in med and "bare-forward" in med:
        m = med[name]
        print(f"- {name}: {m['total'] / med['nginx']['total']:.2f}x nginx's CPU a request, "
              f"{m['total'] / med['bare-forward']['total']:.2f}x bare-forward's; "
              f"{100 * m['rps'] / med['nginx']['rps']:.0f}% of nginx req/s")
if "A" in med and "B" in med:
    print(f"- B against A: {100 * (med['B']['total'] / med['A']['total'] - 1):+.1f}% CPU a request, "
          f"{100 * (med['B']['rps'] / med['A']['rps'] - 1):+.1f}% req/s")
PY
