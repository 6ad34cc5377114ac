#!/usr/bin/env bash
# Installs what the tests need (Python dev extras, Redis, Kafka jars, Chromium for the status-page
# test, promtool for the alert rules, openssl for the TLS tests) and runs the whole suite against
# real Kafka and Redis. Extra arguments go to pytest.
# Usage: bash deploy/test.sh [--quick] [pytest args]
#   --quick: the unit, property and twin tests plus one end-to-end stream test (pytest markers:
#   `quick or not (integration or fuzz)`); installs only what is missing or out of date.
# Kafka and Redis: KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set; else the test session starts the
# deploy/ services that are not running and stops them at its end (tests/services.py), leaving
# running those that already were.
source "$(dirname "$0")/common.sh"
cd "$DEPLOY_DIR/.."
require_cargo
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi

# Whether the installed package is this tree's: importable with its test tools, and its Rust
# extension built after the last change to the Rust sources.
installed_and_current() {
  python3 -c 'import stream_features._native, pytest, hypothesis' 2>/dev/null || return 1
  local built; built=$(ls stream_features/_native*.so 2>/dev/null | head -n 1)
  [ -n "$built" ] || return 1
  [ -z "$(find native Cargo.toml Cargo.lock build.rs pyproject.toml -newer "$built" -print -quit)" ]
}

if [ "$quick" = 1 ]; then
  installed_and_current || python3 -m pip install -q -e ".[dev]"
  "$DEPLOY_DIR/redis.sh" install
  "$DEPLOY_DIR/kafka.sh" fetch
  exec python3 -m pytest -m "quick or not (integration or fuzz)" "$@"
fi

python3 -m pip install -q -e ".[dev]"
"$DEPLOY_DIR/redis.sh" install
"$DEPLOY_DIR/kafka.sh" fetch
# A Debian package for a tool some tests need, installed when missing (those tests fail in CI without it).
apt_tool() {
  local command=$1 package=$2 why=$3 options=${4:-}
  command -v "$command" >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then echo "test.sh: $command is missing (sudo apt-get install -y $package): $why" >&2; return 0; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $options "$package" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $options "$package" >/dev/null; }
}
apt_tool chromium chromium "the status-page test"
apt_tool promtool prometheus "the alert rule tests" --no-install-recommends  # Debian's prometheus ships promtool
apt_tool openssl openssl "the TLS tests make their certificates with it"
exec python3 -m pytest "$@"
