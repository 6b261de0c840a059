#!/usr/bin/env bash
# Local infrastructure for execdist: a real Apache Kafka broker (KRaft, broker + controller in one
# process) and a real Confluent-compatible schema registry (Apicurio Registry 3), both run with
# `java` from jars resolved from Maven Central into a cache outside the repository.
#
#   scripts/infra.sh install   resolve the jars (once; re-used from the cache afterwards)
#   scripts/infra.sh up        start broker and registry in the background, wait until both answer
#   scripts/infra.sh down      stop what `up` started and remove its data and logs
#   scripts/infra.sh status    say what is running
#
# Everything `up` writes (data, logs, pid files) lives under $EXECDIST_INFRA_DIR (default .infra/).
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
KAFKA_HEAP=${EXECDIST_KAFKA_HEAP:-768m}
REGISTRY_HEAP=${EXECDIST_REGISTRY_HEAP:-384m}

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

kafka_ready() { port_open "$KAFKA_PORT" && grep -q 'Kafka Server started' "$INFRA_DIR/kafka.log" 2>/dev/null; }
registry_ready() { curl -fsS "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects" >/dev/null 2>&1; }

start_kafka() {
  if pid_alive "$INFRA_DIR/kafka.pid"; then say "Kafka already running (pid $(cat "$INFRA_DIR/kafka.pid"))"; return; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is already in use by another process. Stop it, or pick another port with EXECDIST_KAFKA_PORT (and EXECDIST_BROKER for the worker)."
  port_open "$CONTROLLER_PORT" && die "port $CONTROLLER_PORT (Kafka controller) is already in use. Stop that process or set EXECDIST_CONTROLLER_PORT."
  mkdir -p "$INFRA_DIR/kafka-data"
  cat >"$INFRA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$INFRA_DIR/kafka-data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
log.segment.bytes=104857600
EOF
  local cp="$KAFKA_HOME/libs/*"
  local log4j="-Dlog4j.configuration=file:$ROOT/scripts/kafka/log4j.properties"
  if [ ! -f "$INFRA_DIR/kafka-data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java -cp "$cp" "$log4j" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    java -cp "$cp" "$log4j" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$INFRA_DIR/server.properties" --ignore-formatted >"$INFRA_DIR/kafka-format.log" 2>&1 \
      || die "formatting Kafka storage failed; see $INFRA_DIR/kafka-format.log"
  fi
  say "starting Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT"
  java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true "$log4j" \
    -cp "$cp" kafka.Kafka "$INFRA_DIR/server.properties" </dev/null >"$INFRA_DIR/kafka.log" 2>&1 &
  echo $! >"$INFRA_DIR/kafka.pid"
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

up() {
  install
  mkdir -p "$INFRA_DIR"
  start_kafka
  start_registry
  wait_for "Kafka" "$INFRA_DIR/kafka.pid" 90 kafka_ready || { tail -20 "$INFRA_DIR/kafka.log" >&2; die "Kafka did not start (see above); its log is $INFRA_DIR/kafka.log"; }
  say "Kafka ready: 127.0.0.1:$KAFKA_PORT"
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
  stop_pid "schema registry" "$INFRA_DIR/registry.pid"
  stop_pid "Kafka" "$INFRA_DIR/kafka.pid"
  rm -rf "$INFRA_DIR"
  say "stopped; $INFRA_DIR removed"
}

status() {
  if pid_alive "$INFRA_DIR/kafka.pid"; then say "Kafka: running, 127.0.0.1:$KAFKA_PORT"; else say "Kafka: stopped"; fi
  if pid_alive "$INFRA_DIR/registry.pid"; then say "schema registry: running, http://127.0.0.1:$REGISTRY_PORT"; else say "schema registry: stopped"; fi
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
