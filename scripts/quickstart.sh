#!/usr/bin/env bash
# The main job on the embedded default, offline: build `idlehands`, start the gateway on an
# embedded SQLite store with a `mock_response` model (examples/quickstart.yaml), create a
# virtual key with a budget (the seed's curl), run the agent through the gateway with that key,
# then show the key's spend and the spend log. The gateway keeps running until Ctrl-C
# (pass --once to stop after the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
ONCE=0; [ "${1:-}" = "--once" ] && ONCE=1
PORT="${PORT:-4000}"
BASE="http://localhost:$PORT"
DEMO="${IDLEHANDS_QUICKSTART_DIR:-$PWD/.quickstart}"
mkdir -p "$DEMO"

cargo build --release -p idlehands-cli
BIN="$PWD/target/release/idlehands"

# Keep the demo's agent state apart from a real ~/.idlehands.
export IDLEHANDS_STATE_DIR="$DEMO/state"
export IDLEHANDS_CONFIG_PATH="$DEMO/state/idlehands.json"

# Whatever already holds the port would otherwise answer the demo's calls.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "quickstart: port $PORT is already in use (another gateway?); stop it or run PORT=<free port> $0" >&2
  exit 1
fi

# A fresh random master key per run (examples/quickstart.yaml reads it from the environment):
# a key written in a file everyone can read is no key.
export LITELLM_MASTER_KEY
LITELLM_MASTER_KEY="sk-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
"$BIN" proxy --config examples/quickstart.yaml --port "$PORT" --db "$DEMO/proxy.db" &
PROXY=$!
trap 'kill -TERM $PROXY 2>/dev/null; wait $PROXY 2>/dev/null' EXIT
UP=0
for _ in $(seq 1 100); do
  if ! kill -0 "$PROXY" 2>/dev/null; then
    echo "quickstart: the gateway exited before it answered on port $PORT (its message is above)" >&2
    exit 1
  fi
  if curl -fs -o /dev/null "$BASE/health/liveliness"; then UP=1; break; fi
  sleep 0.1
done
if [ "$UP" != 1 ]; then
  echo "quickstart: the gateway did not answer on $BASE/health/liveliness within 10 s" >&2
  exit 1
fi

# The store persists between runs: an earlier run's demo key holds the alias, so drop it (a
# first run has none to drop, and that answer is ignored).
curl -s -o /dev/null -X POST "$BASE/key/delete" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
  -H "Content-Type: application/json" \
  -d '{"key_aliases": ["idlehands"]}' || true
echo "== A virtual key for the agent, with a budget (POST /key/generate)"
KEY_JSON=$(curl -fsS -X POST "$BASE/key/generate" \
  -H "Authorization: Bearer $LITELLM_MASTER_KEY" \
  -H "Content-Type: application/json" \
  -d '{"key_alias": "idlehands", "max_budget": 50.00, "budget_duration": "monthly"}')
echo "$KEY_JSON"
export LITELLM_API_KEY
LITELLM_API_KEY=$(printf '%s' "$KEY_JSON" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
export LITELLM_BASE_URL="$BASE"

echo; echo "== The agent, routed through the gateway with that key (no config file needed)"
(cd "$DEMO" && "$BIN" agent -m "Say hello, then tell me what you can do.")

echo; echo "== What the key has spent (GET /key/info)"
curl -fsS "$BASE/key/info" -H "Authorization: Bearer $LITELLM_API_KEY"; echo
# Spend rows are group-committed off the request path (every second by default).
sleep 1.5
echo; echo "== The spend log (GET /spend/logs)"
curl -fsS "$BASE/spend/logs" -H "Authorization: Bearer $LITELLM_MASTER_KEY"; echo

if [ "$ONCE" = 1 ]; then exit 0; fi
echo
echo "The gateway is still running on $BASE (dashboard: $BASE/ui, master key $LITELLM_MASTER_KEY)."
echo "In another shell: export LITELLM_API_KEY=$LITELLM_API_KEY LITELLM_BASE_URL=$BASE; $BIN"
echo "Ctrl-C stops it."
wait $PROXY
