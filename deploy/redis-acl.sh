#!/usr/bin/env bash
# Writes a Redis ACL file (redis-server --aclfile FILE) with the two least-privilege users of
# stream_features, passwords stored as SHA-256 hashes. Usage: deploy/redis-acl.sh OUTPUT_FILE
# Env: SF_REDIS_CONSUMER_PASSWORD, SF_REDIS_API_PASSWORD (required),
#      SF_REDIS_ADMIN_PASSWORD (optional: an operator user with every right; without it the
#      default user is switched off), STREAM_FEATURES_KEY_PREFIX (sf).
set -euo pipefail
OUT="${1:?usage: $0 OUTPUT_FILE}"
PREFIX="${STREAM_FEATURES_KEY_PREFIX:-sf}"
: "${SF_REDIS_CONSUMER_PASSWORD:?set SF_REDIS_CONSUMER_PASSWORD}"
: "${SF_REDIS_API_PASSWORD:?set SF_REDIS_API_PASSWORD}"
hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

umask 077  # the file holds password hashes: readable by its owner only
{
  # No anonymous access.
  echo "user default off"
  # The consumer: its compare-and-set scripts (whose HGET/HSET/HDEL/EXPIRE run with these rights),
  # loading customers (HGETALL), the watermark hash (reset with DEL+HSET), INFO for the memory
  # gauges; keys under the prefix only, no pub/sub, no admin commands.
  echo "user sf-consumer on #$(hash "$SF_REDIS_CONSUMER_PASSWORD") resetkeys ~${PREFIX}:* resetchannels -@all" \
    "+ping +hgetall +hmget +hget +hset +hsetnx +hdel +del +expire +time +evalsha +eval +script|load +info"
  # The API and status page: read-only key access (%R~) and read-only commands.
  echo "user sf-api on #$(hash "$SF_REDIS_API_PASSWORD") resetkeys %R~${PREFIX}:* resetchannels -@all" \
    "+ping +hgetall +hmget +hlen +info +dbsize +randomkey +memory|usage"
  if [ -n "${SF_REDIS_ADMIN_PASSWORD:-}" ]; then
    echo "user sf-admin on #$(hash "$SF_REDIS_ADMIN_PASSWORD") ~* &* +@all"
  fi
} >"$OUT"
echo "redis-acl.sh: wrote $OUT (users sf-consumer, sf-api${SF_REDIS_ADMIN_PASSWORD:+, sf-admin}; prefix $PREFIX)"
