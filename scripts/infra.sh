#!/usr/bin/env bash
# Local infrastructure for execdist: a real Apache Kafka broker (KRaft, broker + controller in one
# process) and a real Confluent-compatible schema registry (Apicurio Registry 3), both run with
# `java` from jars resolved from Maven Central into a cache outside the repository.
#
#   scripts/infra.sh install   resolve the jars (once; re-used from the cache afterwards)
#   scripts/infra.sh up        start broker and registry in the background, wait until both answer
#   scripts/infra.sh down      stop what `up` started and remove its data and logs
#   scripts/infra.sh status    say what is running
#   scripts/infra.sh bootstrap print the Kafka bootstrap list (host:port[,host:port...])
#
# Everything `up` writes (data, logs, pid files) lives under $EXECDIST_INFRA_DIR (default .infra/).
#
# EXECDIST_BROKERS=3 (`make up BROKERS=3`) starts a three-node KRaft cluster instead of the single
# broker: each node is broker and controller with a 384 MiB heap, replication factor 3,
# min.insync.replicas=2. Node N listens on EXECDIST_KAFKA_PORT + 10*(N-1), its controller on
# EXECDIST_CONTROLLER_PORT + 10*(N-1). Workers need EXECDIST_BROKER=<the bootstrap list> and
# EXECDIST_REPLICATION_FACTOR=3. `up` starts any node that is not running, so a node killed on
# purpose comes back with `up`; `status` and `down` cover every node.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_VERSION=3.9.1
APICURIO_VERSION=3.3.3
CACHE_DIR=${EXECDIST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/execdist}
INFRA_DIR=${EXECDIST_INFRA_DIR:-$ROOT/.infra}
KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
APICURIO_HOME=$CACHE_DIR/apicurio-registry-$APICURIO_VERSION
KAFKA_PORT=${EXECDIST_KAFKA_PORT:-9092}
CONTROLLER_PORT=${EXECDIST_CONTROLLER_PORT:-9093}
REGISTRY_PORT=${EXECDIST_REGISTRY_PORT:-8081}
REGISTRY_MANAGEMENT_PORT=${EXECDIST_REGISTRY_MANAGEMENT_PORT:-$((REGISTRY_PORT + 1000))}
REGISTRY_HEAP=${EXECDIST_REGISTRY_HEAP:-384m}
BROKERS=${EXECDIST_BROKERS:-1}
# log.segment.delete.delay.ms: how long the files of a deleted topic (and of a segment past
# retention) stay before the broker removes them; Kafka's own default is a minute. The bench
# sets it to a second, so that the files of the topics it deletes between its parts are gone
# before the next part starts rather than a minute into it.
FILE_DELETE_DELAY_MS=${EXECDIST_KAFKA_FILE_DELETE_DELAY_MS:-60000}
case "$BROKERS" in
  1) KAFKA_HEAP=${EXECDIST_KAFKA_HEAP:-768m} ;;
  3) KAFKA_HEAP=${EXECDIST_KAFKA_HEAP:-384m} ;;
  *) echo "[infra] error: EXECDIST_BROKERS must be 1 or 3, got '$BROKERS'" >&2; exit 2 ;;
esac

say() { printf '[infra] %s\n' "$*"; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

need_java() {
  command -v java >/dev/null 2>&1 || die "no 'java' on PATH. Install a JDK 17 or newer (Debian: apt-get install openjdk-17-jre-headless) and try again."
  command -v mvn >/dev/null 2>&1 || die "no 'mvn' on PATH. Install Maven (Debian: apt-get install maven) and try again."
}

# Apicurio Registry 3.3 needs Java 21 or newer; use the newest JDK we can find.
registry_java() {
  local candidate version
  for candidate in ${EXECDIST_REGISTRY_JAVA:-} /usr/lib/jvm/temurin-2[1-9]*/bin/java /usr/lib/jvm/java-2[1-9]*/bin/java /usr/lib/jvm/jdk-2[1-9]*/bin/java "$(command -v java)"; do
    [ -x "$candidate" ] || continue
    version=$("$candidate" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
    if [ -n "$version" ] && [ "$version" -ge 21 ]; then echo "$candidate"; return 0; fi
  done
  die "the schema registry (Apicurio Registry $APICURIO_VERSION) needs Java 21 or newer and none was found under /usr/lib/jvm. Install one (e.g. a Temurin 21 JDK) or point EXECDIST_REGISTRY_JAVA at its java binary."
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
  need_java
  mkdir -p "$CACHE_DIR"
  if [ ! -f "$KAFKA_HOME/.complete" ]; then
    say "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_HOME (first time only, about 60 MB)"
    rm -rf "$KAFKA_HOME"; mkdir -p "$KAFKA_HOME/libs"
    mvn -B -ntp -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs" \
      | grep -E 'Copying|BUILD|ERROR' | sed 's/^/[maven] /' || true
    [ -f "$KAFKA_HOME/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || die "Maven did not deliver kafka_2.13-$KAFKA_VERSION.jar; see the output above (is Maven Central reachable?)."
    touch "$KAFKA_HOME/.complete"
  fi
  if [ ! -f "$APICURIO_HOME/.complete" ]; then
    say "resolving Apicurio Registry $APICURIO_VERSION from Maven Central into $APICURIO_HOME (first time only, about 150 MB)"
    rm -rf "$APICURIO_HOME"; mkdir -p "$APICURIO_HOME"
    mvn -B -ntp dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
      -DoutputDirectory="$APICURIO_HOME" | grep -E 'Copying|BUILD|ERROR' | sed 's/^/[maven] /' || true
    local archive="$APICURIO_HOME/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz"
    [ -f "$archive" ] || die "Maven did not deliver $archive; see the output above."
    tar -xzf "$archive" -C "$APICURIO_HOME" && rm -f "$archive"
    [ -n "$(find "$APICURIO_HOME" -name quarkus-run.jar -print -quit)" ] || die "the Apicurio archive has no quarkus-run.jar"
    touch "$APICURIO_HOME/.complete"
  fi
  say "jars ready in $CACHE_DIR"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # name, pidfile, seconds, command...
  local name=$1 pidfile=$2 limit=$3; shift 3
  local waited=0
  until "$@"; do
    pid_alive "$pidfile" || { say "$name exited during start-up"; return 1; }
    sleep 1; waited=$((waited + 1))
    if [ $((waited % 10)) -eq 0 ]; then say "still waiting for $name (${waited}s)"; fi
    [ "$waited" -lt "$limit" ] || return 1
  done
}

# Node N of what `up` starts; the single broker is node 1 and keeps its plain file names.
node_port() { echo $((KAFKA_PORT + 10 * ($1 - 1))); }
node_controller_port() { echo $((CONTROLLER_PORT + 10 * ($1 - 1))); }
node_file() { # node, stem, suffix: kafka.log for the single broker, kafka-2.log in the cluster
  if [ "$BROKERS" = 1 ]; then echo "$INFRA_DIR/$2$3"; else echo "$INFRA_DIR/$2-$1$3"; fi
}

bootstrap() {
  local node list=""
  for node in $(seq 1 "$BROKERS"); do list="${list:+$list,}127.0.0.1:$(node_port "$node")"; done
  echo "$list"
}

registry_ready() { curl -fsS "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects" >/dev/null 2>&1; }

kafka_ready() { # node
  port_open "$(node_port "$1")" && grep -q 'Kafka Server started' "$(node_file "$1" kafka .log)" 2>/dev/null
}

write_properties() { # node, file
  local node=$1 voters="" n replication=1 min_isr=1
  for n in $(seq 1 "$BROKERS"); do voters="${voters:+$voters,}$n@127.0.0.1:$(node_controller_port "$n")"; done
  if [ "$BROKERS" = 3 ]; then replication=3; min_isr=2; fi
  cat >"$2" <<EOF
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(node_port "$node"),CONTROLLER://127.0.0.1:$(node_controller_port "$node")
advertised.listeners=PLAINTEXT://127.0.0.1:$(node_port "$node")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$(node_file "$node" kafka-data "")
num.partitions=4
default.replication.factor=$replication
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=104857600
log.segment.delete.delay.ms=$FILE_DELETE_DELAY_MS
EOF
  if [ "$BROKERS" = 3 ]; then
    # three JVMs share two cores: fewer threads each; a restarted node is back in the ISR fast
    cat >>"$2" <<EOF
num.network.threads=2
num.io.threads=4
background.threads=4
replica.lag.time.max.ms=10000
EOF
  fi
}

start_kafka_node() { # node, cluster id
  local node=$1 cluster_id=$2 port controller props data log pidfile min_heap=256m
  port=$(node_port "$node"); controller=$(node_controller_port "$node")
  props=$(node_file "$node" server .properties); data=$(node_file "$node" kafka-data "")
  log=$(node_file "$node" kafka .log); pidfile=$(node_file "$node" kafka .pid)
  if pid_alive "$pidfile"; then say "Kafka node $node already running (pid $(cat "$pidfile"))"; return; fi
  port_open "$port" && die "port $port is already in use by another process. Stop it, or pick another port with EXECDIST_KAFKA_PORT (and EXECDIST_BROKER for the worker)."
  port_open "$controller" && die "port $controller (Kafka controller) is already in use. Stop that process or set EXECDIST_CONTROLLER_PORT."
  mkdir -p "$data"
  write_properties "$node" "$props"
  local cp="$KAFKA_HOME/libs/*"
  local log4j="-Dlog4j.configuration=file:$ROOT/scripts/kafka/log4j.properties"
  if [ ! -f "$data/meta.properties" ]; then
    java -cp "$cp" "$log4j" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$props" --ignore-formatted >"$(node_file "$node" kafka-format .log)" 2>&1 \
      || die "formatting Kafka storage failed; see $(node_file "$node" kafka-format .log)"
  fi
  if [ "$BROKERS" = 1 ]; then
    say "starting Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$port"
  else
    say "starting Kafka $KAFKA_VERSION (KRaft) node $node of $BROKERS on 127.0.0.1:$port"
    min_heap=128m
  fi
  java -Xms"$min_heap" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true "$log4j" \
    -cp "$cp" kafka.Kafka "$props" </dev/null >"$log" 2>&1 &
  echo $! >"$pidfile"
}

start_kafka() {
  local cluster_id node
  if [ -f "$INFRA_DIR/cluster.id" ]; then
    cluster_id=$(cat "$INFRA_DIR/cluster.id")
  else
    cluster_id=$(java -cp "$KAFKA_HOME/libs/*" "-Dlog4j.configuration=file:$ROOT/scripts/kafka/log4j.properties" \
      kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    echo "$cluster_id" >"$INFRA_DIR/cluster.id"
  fi
  for node in $(seq 1 "$BROKERS"); do start_kafka_node "$node" "$cluster_id"; done
}

wait_for_kafka() {
  local node log
  for node in $(seq 1 "$BROKERS"); do
    log=$(node_file "$node" kafka .log)
    wait_for "Kafka node $node" "$(node_file "$node" kafka .pid)" 90 kafka_ready "$node" \
      || { tail -20 "$log" >&2; die "Kafka did not start (see above); its log is $log"; }
  done
  say "Kafka ready: $(bootstrap)"
}

start_registry() {
  if pid_alive "$INFRA_DIR/registry.pid"; then say "schema registry already running (pid $(cat "$INFRA_DIR/registry.pid"))"; return; fi
  port_open "$REGISTRY_PORT" && die "port $REGISTRY_PORT is already in use by another process. Stop it, or set EXECDIST_REGISTRY_PORT (and EXECDIST_SCHEMA_REGISTRY_URL for the worker)."
  port_open "$REGISTRY_MANAGEMENT_PORT" && die "port $REGISTRY_MANAGEMENT_PORT (registry management) is already in use. Stop that process or set EXECDIST_REGISTRY_MANAGEMENT_PORT."
  local java_bin jar
  java_bin=$(registry_java)
  jar=$(find "$APICURIO_HOME" -name quarkus-run.jar -print -quit)
  say "starting Apicurio Registry $APICURIO_VERSION (in-memory) on http://127.0.0.1:$REGISTRY_PORT"
  (cd "$INFRA_DIR" && exec "$java_bin" -Xms128m -Xmx"$REGISTRY_HEAP" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
    -Dquarkus.log.level=WARN -Dquarkus.log.category.io.apicurio.level=INFO \
    -jar "$jar") </dev/null >"$INFRA_DIR/registry.log" 2>&1 &
  echo $! >"$INFRA_DIR/registry.pid"
}

# What an earlier `up` left in $INFRA_DIR: 3 for a cluster, 1 for the single broker, 0 for nothing.
started_brokers() {
  if [ -d "$INFRA_DIR/kafka-data-1" ] || [ -f "$INFRA_DIR/kafka-1.pid" ]; then echo 3
  elif [ -d "$INFRA_DIR/kafka-data" ] || [ -f "$INFRA_DIR/kafka.pid" ]; then echo 1
  else echo 0; fi
}

up() {
  install
  local found
  found=$(started_brokers)
  if [ "$found" != 0 ] && [ "$found" != "$BROKERS" ]; then
    die "$INFRA_DIR holds a $found-broker setup, but $BROKERS broker(s) were asked for; run 'make down' first"
  fi
  mkdir -p "$INFRA_DIR"
  start_kafka
  start_registry
  wait_for_kafka
  wait_for "schema registry" "$INFRA_DIR/registry.pid" 120 registry_ready || { tail -20 "$INFRA_DIR/registry.log" >&2; die "the schema registry did not start (see above); its log is $INFRA_DIR/registry.log"; }
  say "schema registry ready: http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
}

stop_pid() { # name pidfile
  local name=$1 file=$2 pid waited=0
  pid_alive "$file" || { rm -f "$file"; return 0; }
  pid=$(cat "$file")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.5; waited=$((waited + 1))
    if [ "$waited" -ge 40 ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -f "$file"
}

down() {
  if [ "$(started_brokers)" = 3 ]; then BROKERS=3; fi
  stop_pid "schema registry" "$INFRA_DIR/registry.pid"
  local node
  for node in $(seq 1 "$BROKERS"); do stop_pid "Kafka node $node" "$(node_file "$node" kafka .pid)"; done
  rm -rf "$INFRA_DIR"
  say "stopped; $INFRA_DIR removed"
}

status() {
  if [ "$(started_brokers)" = 3 ]; then BROKERS=3; fi
  local node
  for node in $(seq 1 "$BROKERS"); do
    if [ "$BROKERS" = 1 ]; then
      if pid_alive "$INFRA_DIR/kafka.pid"; then say "Kafka: running, 127.0.0.1:$KAFKA_PORT"; else say "Kafka: stopped"; fi
    elif pid_alive "$(node_file "$node" kafka .pid)"; then
      say "Kafka node $node: running, 127.0.0.1:$(node_port "$node")"
    else
      say "Kafka node $node: stopped"
    fi
  done
  if pid_alive "$INFRA_DIR/registry.pid"; then say "schema registry: running, http://127.0.0.1:$REGISTRY_PORT"; else say "schema registry: stopped"; fi
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  bootstrap) bootstrap ;;
  *) echo "usage: $0 install|up|down|status|bootstrap" >&2; exit 2 ;;
esac
