#!/usr/bin/env bash
# Installs what the tests need (Python dev extras, Redis, Kafka jars, Chromium for the status-page
# test, promtool for the alert rules, openssl for the TLS tests) and runs the whole suite against
# real Kafka and Redis. Extra arguments go to pytest.
# Usage: bash deploy/test.sh [pytest args]
source "$(dirname "$0")/common.sh"
cd "$DEPLOY_DIR/.."
require_cargo
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
# The fixtures start Kafka and Redis through deploy/ unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set.
exec python3 -m pytest "$@"
