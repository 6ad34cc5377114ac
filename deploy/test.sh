#!/usr/bin/env bash
# Installs what the tests need (Python dev extras, Redis, Kafka jars, Chromium for the status-page
# test, promtool for the alert rules) and runs the whole suite against real Kafka and Redis. Extra arguments go to pytest.
# Usage: bash deploy/test.sh [pytest args]
source "$(dirname "$0")/common.sh"
cd "$DEPLOY_DIR/.."
require_cargo
python3 -m pip install -q -e ".[dev]"
"$DEPLOY_DIR/redis.sh" install
"$DEPLOY_DIR/kafka.sh" fetch
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
  else
    echo "test.sh: chromium is missing (sudo apt-get install -y chromium); the status-page test will skip" >&2
  fi
fi
if ! command -v promtool >/dev/null; then  # alert rule tests (Debian's prometheus package ships promtool)
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  else
    echo "test.sh: promtool is missing (sudo apt-get install -y prometheus); the alert rule tests will skip" >&2
  fi
fi
# The fixtures start Kafka and Redis through deploy/ unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL are set.
exec python3 -m pytest "$@"
