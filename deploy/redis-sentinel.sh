#!/usr/bin/env bash
# A Sentinel-managed Redis on 127.0.0.1 from Debian's redis-server package: a primary, one
# replica and three sentinels (quorum 2), with the settings in deploy/redis.conf.
# Usage: deploy/redis-sentinel.sh start|stop|status
# Env: SENTINEL_PRIMARY_PORT (6380; the replica gets +1), SENTINEL_PORT (26380; +1, +2),
#      SENTINEL_SERVICE (sf), STREAM_FEATURES_HOME.
# Then: REDIS_URL=redis+sentinel://127.0.0.1:26380,127.0.0.1:26381,127.0.0.1:26382/sf
source "$(dirname "$0")/common.sh"
PRIMARY=${SENTINEL_PRIMARY_PORT:-6380}
REPLICA=$((PRIMARY + 1))
FIRST_SENTINEL=${SENTINEL_PORT:-26380}
SERVICE=${SENTINEL_SERVICE:-sf}
BASE="$SF_HOME/sentinel"

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
up() { cli "$1" ping 2>/dev/null | grep -q PONG; }

server() {  # port, extra args...
  local port=$1; shift
  mkdir -p "$BASE/data-$port"
  up "$port" && return 0
  # Sentinel runs CONFIG REWRITE on a promoted replica: each server gets its own copy of the file.
  cp "$DEPLOY_DIR/redis.conf" "$BASE/redis-$port.conf"
  redis-server "$BASE/redis-$port.conf" --port "$port" --dir "$BASE/data-$port" --pidfile "$BASE/redis-$port.pid" \
    --logfile "$LOG_DIR/redis-$port.log" --daemonize yes "$@"
}

start() {
  "$DEPLOY_DIR/redis.sh" install
  mkdir -p "$BASE"
  server "$PRIMARY"
  for _ in $(seq 1 40); do up "$PRIMARY" && break; sleep 0.25; done
  server "$REPLICA" --replicaof 127.0.0.1 "$PRIMARY"
  for port in $FIRST_SENTINEL $((FIRST_SENTINEL + 1)) $((FIRST_SENTINEL + 2)); do
    up "$port" && continue
    # Sentinel rewrites its config file: one per sentinel, written once.
    local config="$BASE/sentinel-$port.conf"
    [ -f "$config" ] || cat >"$config" <<CONF
port $port
bind 127.0.0.1
dir $BASE
sentinel monitor $SERVICE 127.0.0.1 $PRIMARY 2
sentinel down-after-milliseconds $SERVICE 2000
sentinel failover-timeout $SERVICE 10000
CONF
    redis-server "$config" --sentinel --daemonize yes --pidfile "$BASE/sentinel-$port.pid" \
      --logfile "$LOG_DIR/sentinel-$port.log"
  done
  for _ in $(seq 1 60); do
    cli "$FIRST_SENTINEL" sentinel replicas "$SERVICE" 2>/dev/null | grep -q "$REPLICA" && break
    sleep 0.5
  done
  echo "redis-sentinel.sh: primary 127.0.0.1:$PRIMARY, replica :$REPLICA, sentinels :$FIRST_SENTINEL-$((FIRST_SENTINEL + 2))"
  echo "REDIS_URL=redis+sentinel://127.0.0.1:$FIRST_SENTINEL,127.0.0.1:$((FIRST_SENTINEL + 1)),127.0.0.1:$((FIRST_SENTINEL + 2))/$SERVICE"
}

stop() {
  for port in $FIRST_SENTINEL $((FIRST_SENTINEL + 1)) $((FIRST_SENTINEL + 2)) "$REPLICA" "$PRIMARY"; do
    up "$port" && cli "$port" shutdown nosave >/dev/null 2>&1 || true
  done
  echo "redis-sentinel.sh: stopped"
}

status() {
  local address
  address=$(cli "$FIRST_SENTINEL" sentinel get-master-addr-by-name "$SERVICE" 2>/dev/null | paste -sd: -) || true
  if [ -n "$address" ]; then echo "sentinel: primary of '$SERVICE' is $address"; else echo "sentinel: stopped"; return 3; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
