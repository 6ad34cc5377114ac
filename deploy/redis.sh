#!/usr/bin/env bash
# Redis on 127.0.0.1 from Debian's redis-server package, with the settings in deploy/redis.conf.
# Usage: deploy/redis.sh install|start|stop|status|restart|wipe   Env: REDIS_PORT (6379), STREAM_FEATURES_HOME.
source "$(dirname "$0")/common.sh"
DATA="$SF_HOME/redis-data-$REDIS_PORT"
PIDFILE="$SF_HOME/redis-$REDIS_PORT.pid"

install() {
  if command -v redis-server >/dev/null; then return 0; fi
  if [ "$(id -u)" != 0 ]; then echo "redis.sh: redis-server is missing; run: sudo apt-get install -y redis-server" >&2; exit 1; fi
  echo "redis.sh: installing Debian's redis-server"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

cli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
running() { cli ping 2>/dev/null | grep -q PONG; }

start() {
  install
  if running; then echo "redis.sh: already running on 127.0.0.1:$REDIS_PORT"; return 0; fi
  mkdir -p "$DATA"
  # Redis may rewrite its config file (CONFIG REWRITE): it runs from a copy, never the repository's.
  cp "$DEPLOY_DIR/redis.conf" "$SF_HOME/redis-$REDIS_PORT.conf"
  redis-server "$SF_HOME/redis-$REDIS_PORT.conf" --port "$REDIS_PORT" --dir "$DATA" \
    --pidfile "$PIDFILE" --logfile "$LOG_DIR/redis-$REDIS_PORT.log" --daemonize yes
  for _ in $(seq 1 60); do running && break; sleep 0.25; done
  running || { echo "redis.sh: Redis did not answer; see $LOG_DIR/redis-$REDIS_PORT.log" >&2; exit 1; }
  echo "redis.sh: Redis $(redis-server --version | awk '{print $3}') up on 127.0.0.1:$REDIS_PORT"
}

stop() {
  if ! running; then echo "redis.sh: not running"; return 0; fi
  cli shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 40); do running || break; sleep 0.25; done
  echo "redis.sh: stopped"
}

status() {
  if running; then echo "redis: running on 127.0.0.1:$REDIS_PORT"; else echo "redis: stopped"; return 3; fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  wipe) stop; rm -rf "$DATA"; echo "redis.sh: data removed" ;;
  *) echo "usage: $0 install|start|stop|restart|status|wipe" >&2; exit 2 ;;
esac
