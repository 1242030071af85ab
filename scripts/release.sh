#!/usr/bin/env bash
# What users download: builds the release `idlehands`, splits its debug info (line tables) into
# idlehands.debug (with the symbol table) and ships the binary stripped of both, linked to that
# file by .gnu_debuglink (gdb and perf find it when it sits beside the binary or under
# /usr/lib/debug). Packs dist/idlehands-<version>-<target>.tar.gz (the binary and the
# README) and dist/idlehands-<version>-<target>.debug.tar.gz (debug info only),
# then measures the stripped binary: file size, start-up to the first /health/liveliness answer
# and idle RSS (median of 5 starts of `idlehands proxy --config bench/proxy.yaml` on SQLite).
# Usage: scripts/release.sh   (needs objcopy from binutils; RELEASE_STARTS picks the start count;
#   RELEASE_SKIP_BUILD=1 packs target/release/idlehands as already built)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v objcopy > /dev/null || { echo "release: needs objcopy (apt install binutils)" >&2; exit 1; }
[ -n "${RELEASE_SKIP_BUILD:-}" ] || cargo build --release -p idlehands-cli
[ -x target/release/idlehands ] || { echo "release: no target/release/idlehands" >&2; exit 1; }
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TARGET=$(rustc -vV | sed -n 's/^host: //p')
NAME="idlehands-$VERSION-$TARGET"
OUT="dist/$NAME"
rm -rf "$OUT" "$OUT.debug"; mkdir -p "$OUT" "$OUT.debug"
objcopy --only-keep-debug target/release/idlehands "$OUT.debug/idlehands.debug"
objcopy --strip-all --add-gnu-debuglink="$OUT.debug/idlehands.debug" target/release/idlehands "$OUT/idlehands"
cp README.md "$OUT/"
tar -C dist -czf "dist/$NAME.tar.gz" "$NAME"
tar -C dist -czf "dist/$NAME.debug.tar.gz" "$NAME.debug"

size_mb() { python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1]) / 1e6:.1f}')" "$1"; }
echo "built target/release/idlehands: $(size_mb target/release/idlehands) MB with line tables"
echo "shipped $OUT/idlehands: $(size_mb "$OUT/idlehands") MB ($(size_mb "dist/$NAME.tar.gz") MB as .tar.gz);" \
  "debug info $(size_mb "$OUT.debug/idlehands.debug") MB in $NAME.debug.tar.gz"

# Start-up and idle RSS of the shipped binary.
WORK=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=18099
for i in $(seq 1 "${RELEASE_STARTS:-5}"); do
  start=$(date +%s%N)
  "$OUT/idlehands" proxy --config bench/proxy.yaml --host 127.0.0.1 --port "$PORT" --db "$WORK/r$i.db" > "$WORK/r$i.log" 2>&1 &
  PID=$!
  up=0
  for _ in $(seq 1 1000); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/health/liveliness" && { up=1; break; }; sleep 0.005; done
  [ "$up" = 1 ] || { echo "release: the shipped binary did not come up; its log:" >&2; cat "$WORK/r$i.log" >&2; exit 1; }
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  sleep 1  # idle: let start-up work (migrations, the writer) settle before reading RSS
  echo "$ms $(ps -o rss= -p "$PID" | tr -d ' ')" >> "$WORK/starts"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
python3 - "$WORK/starts" <<'PY'
import statistics, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
ms = statistics.median(r[0] for r in rows); kb = statistics.median(r[1] for r in rows)
print(f"start-up to first liveliness answer: median {ms:.0f} ms of {len(rows)} (all: {', '.join(str(r[0]) for r in rows)}); idle RSS median {kb / 1024:.1f} MB")
PY
