#!/usr/bin/env bash
# Starts, stops or reports both services: deploy/services.sh start|stop|status
source "$(dirname "$0")/common.sh"
case "${1:-}" in
  start|stop|status|restart) "$DEPLOY_DIR/redis.sh" "$1"; "$DEPLOY_DIR/kafka.sh" "$1" ;;
  *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
