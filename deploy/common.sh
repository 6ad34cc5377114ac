# Shared settings for the deploy scripts. Sourced, not run.
# Everything lives under STREAM_FEATURES_HOME (default ~/.cache/stream-features):
#   kafka-<version>/libs  the broker's jars, fetched from Maven Central
#   kafka-data/           the KRaft log directory
#   redis-data/           Redis's append-only file
#   logs/                 kafka.out, kafka/server.log, redis.log
set -euo pipefail
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SF_HOME="${STREAM_FEATURES_HOME:-$HOME/.cache/stream-features}"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
LOG_DIR="$SF_HOME/logs"
mkdir -p "$SF_HOME" "$LOG_DIR"

# Waits until 127.0.0.1:$1 accepts TCP connections, at most $2 seconds.
wait_for_port() {
  local port=$1 deadline=$((SECONDS + $2))
  while (( SECONDS < deadline )); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The package builds a Rust extension on install (maturin runs cargo): find cargo or say how to get it.
require_cargo() {
  if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    echo "stream_features builds a Rust extension on install: install a Rust toolchain first (https://rustup.rs), then retry" >&2
    exit 2
  fi
}
