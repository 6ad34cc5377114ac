#!/usr/bin/env bash
# The whole product in one command, on a fresh machine:
#   installs the package, starts Kafka and Redis (deploy/services.sh), starts the consumer and the
#   API in the background, loads generated history from a file (backfill) and feeds the last week
#   to the topic, and prints a few customers' features.
# Usage: bash deploy/demo.sh [start|stop]     Env: DEMO_EVENTS (60000), DEMO_CUSTOMERS (3000), API_PORT (8000)
source "$(dirname "$0")/common.sh"
ROOT="$(cd "$DEPLOY_DIR/.." && pwd)"
API_PORT="${API_PORT:-8000}"
METRICS_PORT="${METRICS_PORT:-9464}"
EVENTS="${DEMO_EVENTS:-60000}"
CUSTOMERS="${DEMO_CUSTOMERS:-3000}"
export KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$KAFKA_PORT" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export STREAM_FEATURES_TOPIC="${STREAM_FEATURES_TOPIC:-customer-events}"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_demo() {
  # Consumer and API first (SIGTERM drains the batch in flight), then the services they use.
  for name in api consumer; do
    local pidfile="$SF_HOME/demo-$name.pid"
    if alive "$pidfile"; then
      local pid; pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
      echo "demo: stopped $name"
    fi
    rm -f "$pidfile"
  done
  "$DEPLOY_DIR/services.sh" stop
}

start_demo() {
  cd "$ROOT"
  # Installed from this checkout? (Checked outside it: inside, Python imports the folder itself.)
  local installed
  installed=$(cd / && python3 -c "import os, stream_features._native as n; print(os.path.dirname(os.path.dirname(n.__file__)))" 2>/dev/null || true)
  if [ "$installed" != "$ROOT" ] || ! command -v stream-features >/dev/null; then
    echo "demo: installing stream_features (pip install -e .; builds the Rust core, about a minute)"
    require_cargo
    python3 -m pip install -q -e .
  fi
  "$DEPLOY_DIR/services.sh" start
  if ! alive "$SF_HOME/demo-consumer.pid"; then
    nohup stream-features consume --metrics-port "$METRICS_PORT" >"$LOG_DIR/consumer.log" 2>&1 &
    echo $! >"$SF_HOME/demo-consumer.pid"
  fi
  if ! alive "$SF_HOME/demo-api.pid"; then
    nohup stream-features serve --port "$API_PORT" >"$LOG_DIR/api.log" 2>&1 &
    echo $! >"$SF_HOME/demo-api.pid"
  fi
  echo "demo: generating $EVENTS events for $CUSTOMERS customers over 120 days"
  stream-features generate --events "$EVENTS" --customers "$CUSTOMERS" --seed "$(date +%s)" -o "$SF_HOME/demo-events.jsonl"
  # The day a team adopts it: what happened before the last week is history in a file (loaded
  # with backfill), the last week arrives on the topic.
  python3 - "$SF_HOME" <<'PY'
import json, sys, time
from pathlib import Path
from stream_features.core.timeparse import parse_timestamp
home, cut = Path(sys.argv[1]), time.time() - 7 * 86400
with (home / "demo-events.jsonl").open("rb") as source, (home / "demo-history.jsonl").open("wb") as history, \
        (home / "demo-live.jsonl").open("wb") as live:
    for line in source:
        try:
            moment = parse_timestamp(json.loads(line)["timestamp"])
        except Exception:
            moment = cut  # not an event: the consumer dead-letters it
        (history if moment < cut else live).write(line)
PY
  echo "demo: loading the history file (stream-features backfill)"
  stream-features backfill "$SF_HOME/demo-history.jsonl" --dead-letters "$SF_HOME/demo-history-dead-letters.jsonl"
  echo "demo: producing the last week to the topic"
  stream-features produce "$SF_HOME/demo-live.jsonl"
  echo "demo: waiting for the consumer to catch up (status: http://127.0.0.1:$API_PORT/status)"
  python3 - "$API_PORT" <<'PY'
import json, sys, time, urllib.request
port, deadline = sys.argv[1], time.monotonic() + 300
while time.monotonic() < deadline:
    try:
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=3))
        if status.get("lag") == 0 and status.get("committed"):
            print(f"demo: caught up ({status['committed']} records consumed on this topic so far, {status['dead_letters']} dead letters)")
            sys.exit(0)
        print(f"demo: lag {status.get('lag')}", flush=True)
    except OSError:
        pass
    time.sleep(2)
sys.exit("demo: the consumer did not catch up within 5 minutes; see the logs in ~/.cache/stream-features/logs")
PY
  for customer in $(head -n 400 "$SF_HOME/demo-events.jsonl" | grep -o '"customer_id":"cust-[0-9]*"' | cut -d'"' -f4 | sort | uniq -c | sort -rn | head -n 2 | awk '{print $2}'); do
    stream-features features "$customer" --days 30
  done
  cat <<MSG

demo: running. Try:
  stream-features features cust-0000001 --days 90 --json
  curl -s 'http://127.0.0.1:$API_PORT/v1/customers/cust-0000001/summary' | python3 -m json.tool
  status page: http://127.0.0.1:$API_PORT/status    API docs: http://127.0.0.1:$API_PORT/docs
  metrics: http://127.0.0.1:$API_PORT/metrics (API), http://127.0.0.1:$METRICS_PORT/metrics (consumer)
  stop everything: bash deploy/demo.sh stop
MSG
}

case "${1:-start}" in
  start) start_demo ;;
  stop) stop_demo ;;
  *) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
