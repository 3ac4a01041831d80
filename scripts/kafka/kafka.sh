#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) on 127.0.0.1 for kaudit's tests and
# benchmarks, from the server jars on Maven Central: no Docker, no tarball. See scripts/kafka/README.md.
#
#   kafka.sh check                 exit 0 when java and mvn are usable; otherwise print why and exit 3
#   kafka.sh fetch                 fetch the jars into the cache once (prints how long a cold fetch took)
#   kafka.sh start [options]       format a log dir (unless already formatted), start the broker in the background,
#                                  wait until it serves, print KAFKA_* lines (KEY=VALUE) on stdout
#       --dir D                    the broker's directory (default: a new one under ${TMPDIR:-/tmp}); starting again
#                                  on a dir that holds a stopped broker restarts it with the same ports and data
#       --port P                   PLAINTEXT port (default: a free one); also --controller-port, --sasl-port, --ssl-port
#       --secure                   also listen with SASL_PLAINTEXT and SASL_SSL (SCRAM-SHA-256/512, user kaudit,
#                                  and on SASL_SSL also PLAIN as Azure Event Hubs takes it: user $ConnectionString,
#                                  password kaudit-secret, a self-signed certificate for 127.0.0.1 in D/tls/ca.pem)
#       --watch-pid PID            stop the broker when process PID goes away (tests pass their own pid, so a killed
#                                  test run leaves no JVM behind)
#       --proxy-port P             also a PLAINTEXT listener (PROXIED) on a free port that advertises 127.0.0.1:P, for
#                                  a test's fault-injecting proxy on P: clients that bootstrap through the proxy are
#                                  told to connect to it again (printed: KAFKA_PROXIED_TARGET, where the proxy forwards)
#   kafka.sh stop --dir D [--keep] stop the broker (SIGTERM, SIGKILL after 30 s); removes D unless --keep
#
# Environment: KAUDIT_KAFKA_VERSION (default below), KAUDIT_KAFKA_CACHE (root of the jar cache, default
# ~/.cache/kaudit; jars go to <root>/kafka-<version>/libs), KAUDIT_KAFKA_HEAP (default 512m),
# KAUDIT_KAFKA_START_TIMEOUT (seconds, default 90), KAUDIT_KAFKA_JAVA and KAUDIT_KAFKA_MVN (default: java and mvn
# on PATH).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${KAUDIT_KAFKA_VERSION:-4.3.1}"
CACHE_ROOT="${KAUDIT_KAFKA_CACHE:-${HOME:-/tmp}/.cache/kaudit}"
CACHE="$CACHE_ROOT/kafka-$VERSION"
LIBS="$CACHE/libs"
HEAP="${KAUDIT_KAFKA_HEAP:-512m}"
JAVA="${KAUDIT_KAFKA_JAVA:-java}"
MVN="${KAUDIT_KAFKA_MVN:-mvn}"
if [[ "$JAVA" == */* ]]; then KEYTOOL="$(dirname "$JAVA")/keytool"; else KEYTOOL=keytool; fi
START_TIMEOUT="${KAUDIT_KAFKA_START_TIMEOUT:-90}"
SCRAM_USER=kaudit
SCRAM_PASSWORD=kaudit-secret
# SASL PLAIN on the SASL_SSL listener as Azure Event Hubs' Kafka endpoint takes it: user $ConnectionString, the
# namespace's connection string as the password.
PLAIN_USER='$ConnectionString'
PLAIN_PASSWORD='Endpoint=sb://kaudit-test.servicebus.windows.net/;SharedAccessKeyName=kaudit-listen;SharedAccessKey=a2F1ZGl0LXRlc3Qta2V5LW5vdC1hLXNlY3JldA=='

SERVICE=kafka.sh
# shellcheck source=../lib/service.sh
source "$HERE/../lib/service.sh"

check() { java_check "$JAVA" "$MVN" "$LIBS/.complete" "a Kafka broker"; }

fetch() {
  [[ -f "$LIBS/.complete" ]] && return 0
  check || exit 3
  mkdir -p "$CACHE"
  # Several test files may start brokers at once: one fetches, the others wait for it.
  exec 9>"$CACHE/.lock"
  flock 9
  if [[ -f "$LIBS/.complete" ]]; then exec 9>&-; return 0; fi
  rm -rf "$LIBS.tmp"
  local t0 t1
  t0=$(date +%s%N)
  say "fetching Apache Kafka $VERSION from Maven Central into $LIBS (once) ..."
  if ! "$MVN" -B -ntp -f "$HERE/pom.xml" "-Dkafka.version=$VERSION" dependency:copy-dependencies \
      "-DoutputDirectory=$LIBS.tmp" >"$CACHE/fetch.log" 2>&1; then
    tail -n 30 "$CACHE/fetch.log" >&2
    die "mvn could not fetch Kafka $VERSION (full log: $CACHE/fetch.log)"
  fi
  t1=$(date +%s%N)
  touch "$LIBS.tmp/.complete"
  rm -rf "$LIBS"
  mv "$LIBS.tmp" "$LIBS"
  say "fetched $(ls "$LIBS"/*.jar | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $(( (t1 - t0) / 1000000 )) ms"
  exec 9>&-
}



# A self-signed certificate for 127.0.0.1/localhost in a PKCS12 store for the broker and as PEM for clients.
make_tls() {
  local dir="$1/tls"
  mkdir -p "$dir"
  "$KEYTOOL" -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 30 -dname "CN=127.0.0.1" \
    -ext "SAN=ip:127.0.0.1,dns:localhost" -keystore "$dir/broker.p12" -storetype PKCS12 \
    -storepass kaudit-tls -keypass kaudit-tls >/dev/null 2>&1 || die "keytool could not make a certificate"
  "$KEYTOOL" -exportcert -rfc -alias broker -keystore "$dir/broker.p12" -storepass kaudit-tls \
    -file "$dir/ca.pem" >/dev/null 2>&1 || die "keytool could not export the certificate"
}

write_config() {
  local dir="$1" port="$2" cport="$3" sasl_port="$4" ssl_port="$5" proxied_port="${6:-}" proxy_port="${7:-}"
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ -n "$proxied_port" ]]; then
    listeners+=",PROXIED://127.0.0.1:$proxied_port"
    advertised+=",PROXIED://127.0.0.1:$proxy_port"
    protocols+=",PROXIED:PLAINTEXT"
  fi
  if [[ -n "$sasl_port" ]]; then
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$sasl_port,SASL_SSL://127.0.0.1:$ssl_port"
    advertised+=",SASL_PLAINTEXT://127.0.0.1:$sasl_port,SASL_SSL://127.0.0.1:$ssl_port"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
  fi
  cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka/kafka.sh: one node that is both controller and broker, for tests only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
log.dirs=$dir/data
# Small and quick: few threads and partitions, no replication, no rebalance delay.
num.network.threads=2
num.io.threads=4
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=268435456
EOF
  if [[ -n "$sasl_port" ]]; then
    cat >>"$dir/server.properties" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${PLAIN_USER}="${PLAIN_PASSWORD}";
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required;
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=kaudit-tls
ssl.key.password=kaudit-tls
EOF
  fi
}

prop() { sed -n "s/^$1=//p" "$2" | head -n1; }

start() {
  local dir="" port="" cport="" sasl_port="" ssl_port="" secure=0 watch="" proxy_port="" proxied_port=""
  while (($#)); do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      --controller-port) cport="$2"; shift 2 ;;
      --sasl-port) sasl_port="$2"; shift 2 ;;
      --ssl-port) ssl_port="$2"; shift 2 ;;
      --secure) secure=1; shift ;;
      --watch-pid) watch="$2"; shift 2 ;;
      --proxy-port) proxy_port="$2"; shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  fetch
  local created=0
  if [[ -z "$dir" ]]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/kaudit-kafka.XXXXXX")"; created=1; fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/broker.pid" ]] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    die "a broker is already running from $dir (pid $(cat "$dir/broker.pid"))"
  fi

  local cp="$LIBS/*"
  if [[ ! -f "$dir/server.properties" ]]; then
    [[ -n "$port" ]] || port="$(free_port)"
    [[ -n "$cport" ]] || cport="$(free_port)"
    if ((secure)); then
      [[ -n "$sasl_port" ]] || sasl_port="$(free_port)"
      [[ -n "$ssl_port" ]] || ssl_port="$(free_port)"
      make_tls "$dir"
    fi
    if [[ -n "$proxy_port" ]]; then proxied_port="$(free_port)"; fi
    write_config "$dir" "$port" "$cport" "$sasl_port" "$ssl_port" "$proxied_port" "$proxy_port"
    local cluster_id scram=()
    # A cluster id is 16 random bytes in URL-safe base64 without padding (what `kafka-storage random-uuid` prints).
    # One that starts with '-' would be read as an option by the storage tool's argument parser: draw again.
    cluster_id="-"
    while [[ "$cluster_id" == -* ]]; do cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"; done
    if ((secure)); then
      scram=(--add-scram "SCRAM-SHA-256=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]"
             --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]")
    fi
    if ! "$JAVA" -Xmx256m -cp "$cp" -Dorg.slf4j.simpleLogger.defaultLogLevel=warn kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1; then
      cat "$dir/format.log" >&2
      if ((created)); then rm -rf "$dir"; fi
      die "formatting the KRaft log dir failed (cluster id $cluster_id)"
    fi
  else
    # Restart: same ports, same data.
    port="$(prop advertised.listeners "$dir/server.properties" | sed 's/^PLAINTEXT:\/\/127.0.0.1:\([0-9]*\).*/\1/')"
    sasl_port="$(prop advertised.listeners "$dir/server.properties" | sed -n 's/.*SASL_PLAINTEXT:\/\/127.0.0.1:\([0-9]*\).*/\1/p')"
    ssl_port="$(prop advertised.listeners "$dir/server.properties" | sed -n 's/.*SASL_SSL:\/\/127.0.0.1:\([0-9]*\).*/\1/p')"
    proxied_port="$(prop listeners "$dir/server.properties" | sed -n 's/.*PROXIED:\/\/127.0.0.1:\([0-9]*\).*/\1/p')"
  fi

  # slf4j-simple truncates its log file: keep the log of earlier runs (restarts) in broker.previous.log.
  if [[ -s "$dir/broker.log" ]]; then cat "$dir/broker.log" >>"$dir/broker.previous.log"; fi
  : >"$dir/broker.log"
  "$JAVA" -Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    "-Dorg.slf4j.simpleLogger.logFile=$dir/broker.log" \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=info \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS" \
    -Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients=warn \
    -Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn \
    -Dlog4j2.level=warn \
    -cp "$cp" kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/broker.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/broker.pid"
  if [[ -n "$watch" ]]; then
    # Detached from our stdout/stderr so that whoever runs this script is not kept waiting for the watchdog.
    (
      while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -KILL "$pid" 2>/dev/null || true
        rm -rf "$dir"
      fi
    ) </dev/null >/dev/null 2>&1 &
    disown $! 2>/dev/null || true
  fi

  local deadline=$(( SECONDS + START_TIMEOUT ))
  until grep -q 'Kafka Server started' "$dir/broker.log" && port_in_use "$port"; do
    local failure=""
    if ! kill -0 "$pid" 2>/dev/null; then failure="the broker exited during start-up"
    elif ((SECONDS > deadline)); then failure="the broker did not start within ${START_TIMEOUT}s"; kill -KILL "$pid" 2>/dev/null || true
    fi
    if [[ -n "$failure" ]]; then
      tail -n 40 "$dir/broker.log" "$dir/broker.out" >&2 || true
      # A port taken between choosing it and binding it (another test starting a broker): say so, for a retry.
      if grep -qs 'Address already in use' "$dir/broker.log" "$dir/broker.out"; then failure+=" (port in use)"; fi
      if ((created)); then rm -rf "$dir"; die "$failure"; fi
      die "$failure (logs in $dir)"
    fi
    sleep 0.2
  done
  echo "KAFKA_VERSION=$VERSION"
  echo "KAFKA_DIR=$dir"
  echo "KAFKA_PID=$pid"
  echo "KAFKA_BROKERS=127.0.0.1:$port"
  if [[ -n "$proxied_port" ]]; then echo "KAFKA_PROXIED_TARGET=127.0.0.1:$proxied_port"; fi
  if [[ -n "$sasl_port" ]]; then
    echo "KAFKA_SASL_BROKERS=127.0.0.1:$sasl_port"
    echo "KAFKA_SASL_SSL_BROKERS=127.0.0.1:$ssl_port"
    echo "KAFKA_SCRAM_USER=$SCRAM_USER"
    echo "KAFKA_SCRAM_PASSWORD=$SCRAM_PASSWORD"
    echo "KAFKA_PLAIN_USER=$PLAIN_USER"
    echo "KAFKA_PLAIN_PASSWORD=$PLAIN_PASSWORD"
    echo "KAFKA_CA=$dir/tls/ca.pem"
  fi
}

stop() { stop_dir broker.pid broker "$@"; }

service_main "$@"
