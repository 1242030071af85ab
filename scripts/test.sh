#!/usr/bin/env bash
# The project's test command (README "Run the tests"). Installs test-only tools, then runs the
# whole suite against the real PostgreSQL and Redis on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
# The OpenAI Python SDK test drives the gateway with the official client.
if ! python3 -c "import openai" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openai
fi
# The /metrics test parses the scrape with the Prometheus Python client's OpenMetrics parser.
if ! python3 -c "import prometheus_client" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check prometheus_client
fi
# The OpenTelemetry test decodes the gateway's exports with the OpenTelemetry protobuf types.
if ! python3 -c "import opentelemetry.proto, grpc" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check opentelemetry-proto grpcio
fi
# The pass-through test drives /anthropic with the official Anthropic client.
if ! python3 -c "import anthropic" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check anthropic
fi
# The real-stack tests replay llama-server answers from uvicorn's h11 backend.
if ! python3 -c "import uvicorn, h11" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check uvicorn h11
fi
# The dashboard UI test drives Debian's Chromium through playwright-core (never a downloaded browser).
# The interactive-mode tests drive `idlehands` through a tmux pseudo-terminal.
# The real-stack tests compile a server against cpp-httplib and nlohmann/json, llama-server's HTTP
# stack and JSON library.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
command -v g++ >/dev/null 2>&1 || missing="$missing g++"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
pkg-config --exists cpp-httplib 2>/dev/null || missing="$missing libcpp-httplib-dev"
pkg-config --exists nlohmann_json 2>/dev/null || missing="$missing nlohmann-json3-dev"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
(cd crates/dashboard/tests/browser && npm ci --no-audit --no-fund --silent)
export DATABASE_URL_TEST="${DATABASE_URL_TEST:-postgresql://postgres@127.0.0.1:5432/test}"
export REDIS_URL_TEST="${REDIS_URL_TEST:-redis://127.0.0.1:6379}"
cargo build --workspace --all-targets --locked
cargo nextest run --workspace --locked --no-fail-fast
