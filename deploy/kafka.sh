#!/usr/bin/env bash
# Apache Kafka as a single KRaft broker (broker + controller) on 127.0.0.1, from Maven Central jars.
# Usage: deploy/kafka.sh fetch|start|stop|status|restart
# Env: KAFKA_VERSION (4.1.1), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), STREAM_FEATURES_HOME.
#      KAFKA_SCRAM_USERS="name:password[,name:password...]": the client listener asks for
#      SASL SCRAM-SHA-512 with these users (the first is the broker's own, between its listeners);
#      users are created when the data directory is first formatted. KAFKA_TLS_DIR=DIR (with
#      server.pem holding the key and certificate chain, PKCS#8): the listener uses TLS too
#      (SASL_SSL). Without them: PLAINTEXT, for local use on loopback.
source "$(dirname "$0")/common.sh"
LIBS="$SF_HOME/kafka-$KAFKA_VERSION/libs"
DATA="$SF_HOME/kafka-data-$KAFKA_PORT"
PIDFILE="$SF_HOME/kafka-$KAFKA_PORT.pid"
CONFIG="$SF_HOME/kafka-$KAFKA_PORT.properties"

fetch() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { echo "kafka.sh: mvn is required (apt-get install -y maven)" >&2; exit 1; }
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION from Maven Central into $LIBS"
  mvn -q -B -f "$DEPLOY_DIR/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS"
  touch "$LIBS/.complete"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

# The client listener's protocol: PLAINTEXT, SASL_PLAINTEXT or SASL_SSL (see Env above).
protocol() {
  if [ -z "${KAFKA_SCRAM_USERS:-}" ]; then echo PLAINTEXT
  elif [ -n "${KAFKA_TLS_DIR:-}" ]; then echo SASL_SSL
  else echo SASL_PLAINTEXT; fi
}

security_config() {
  local proto; proto=$(protocol)
  [ "$proto" = PLAINTEXT ] && return 0
  local first="${KAFKA_SCRAM_USERS%%,*}" listener; listener=$(echo "$proto" | tr 'A-Z' 'a-z')
  cat <<PROPS
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.$listener.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="${first%%:*}" password="${first#*:}";
PROPS
  if [ "$proto" = SASL_SSL ]; then
    cat <<PROPS
ssl.keystore.type=PEM
ssl.keystore.location=$KAFKA_TLS_DIR/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_TLS_DIR/ca.pem
PROPS
  fi
}

# --add-scram arguments for the storage format, one per user.
scram_arguments() {
  local user
  IFS=',' read -ra users <<<"${KAFKA_SCRAM_USERS:-}"
  for user in "${users[@]}"; do
    printf -- '--add-scram\0SCRAM-SHA-512=[name=%s,password=%s]\0' "${user%%:*}" "${user#*:}"
  done
}

write_config() {
  local proto; proto=$(protocol)
  umask 077  # may hold the broker's SCRAM password
  cat > "$CONFIG" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=$proto://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=$proto://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=$proto:$proto,CONTROLLER:PLAINTEXT
inter.broker.listener.name=$proto
log.dirs=$DATA
num.partitions=4
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.consumer.min.session.timeout.ms=2000
group.classic.min.session.timeout.ms=2000
auto.create.topics.enable=true
PROPS
  security_config >>"$CONFIG"
}

start() {
  if running; then echo "kafka.sh: already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  if port_open "$KAFKA_PORT"; then echo "kafka.sh: something else listens on 127.0.0.1:$KAFKA_PORT" >&2; exit 1; fi
  fetch
  write_config
  mkdir -p "$LOG_DIR/kafka-$KAFKA_PORT"
  local java_cmd=(java -Xms256m -Xmx768m -XX:+UseG1GC
    -Dlog4j2.configurationFile="$DEPLOY_DIR/kafka/log4j2.properties"
    -Dkafka.logs.dir="$LOG_DIR/kafka-$KAFKA_PORT" -cp "$LIBS/*")
  if [ ! -f "$DATA/meta.properties" ]; then
    local scram=()
    if [ -n "${KAFKA_SCRAM_USERS:-}" ]; then mapfile -d '' -t scram < <(scram_arguments); fi
    "${java_cmd[@]}" kafka.tools.StorageTool format --ignore-formatted "${scram[@]}" \
      -t "$("${java_cmd[@]}" kafka.tools.StorageTool random-uuid)" -c "$CONFIG" >"$LOG_DIR/kafka-format.out" 2>&1 \
      || { cat "$LOG_DIR/kafka-format.out" >&2; exit 1; }
  fi
  nohup "${java_cmd[@]}" kafka.Kafka "$CONFIG" >"$LOG_DIR/kafka-$KAFKA_PORT.out" 2>&1 &
  echo $! >"$PIDFILE"
  if wait_for_port "$KAFKA_PORT" 90; then
    echo "kafka.sh: Kafka $KAFKA_VERSION up on 127.0.0.1:$KAFKA_PORT, $(protocol) (logs: $LOG_DIR/kafka-$KAFKA_PORT.out)"
  else
    echo "kafka.sh: Kafka did not open 127.0.0.1:$KAFKA_PORT within 90 s; see $LOG_DIR/kafka-$KAFKA_PORT.out" >&2
    tail -n 20 "$LOG_DIR/kafka-$KAFKA_PORT.out" >&2 || true
    exit 1
  fi
}

stop() {
  if ! running; then echo "kafka.sh: not running"; rm -f "$PIDFILE"; return 0; fi
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
  echo "kafka.sh: stopped"
}

status() {
  if running && port_open "$KAFKA_PORT"; then echo "kafka: running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"
  else echo "kafka: stopped"; return 3; fi
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  wipe) stop; rm -rf "$DATA"; echo "kafka.sh: data removed" ;;
  *) echo "usage: $0 fetch|start|stop|restart|status|wipe" >&2; exit 2 ;;
esac
