#!/usr/bin/env bash
# A real single-node OpenSearch on 127.0.0.1 for kaudit's tests and benchmarks, from the server's jars on Maven
# Central: no Docker, no tarball. See scripts/opensearch/README.md.
#
#   opensearch.sh check                 exit 0 when java (17+) and mvn are usable; otherwise print why and exit 3
#   opensearch.sh fetch                 fetch the jars into the cache once (prints how long a cold fetch took)
#   opensearch.sh start [options]       lay out a node directory (unless it holds one), start the node in the
#                                       background, wait until it answers, print OPENSEARCH_* lines (KEY=VALUE)
#       --dir D                         the node's directory (default: a new one under ${TMPDIR:-/tmp}); starting
#                                       again on a stopped node's directory restarts it with the same port and data
#       --port P                        HTTP port (default: a free one); also --transport-port
#       --watch-pid PID                 stop the node when process PID goes away (tests pass their own pid)
#   opensearch.sh stop --dir D [--keep] stop the node (SIGTERM, SIGKILL after 30 s); removes D unless --keep
#
# OpenSearch refuses to run as root: as root, the node runs as the system user kaudit-opensearch (created on first
# use) through setpriv, and the jar cache lives where that user can read it.
#
# Environment: KAUDIT_OPENSEARCH_VERSION (default below; 2.19.x runs on Java 17), KAUDIT_OPENSEARCH_CACHE (root of
# the jar cache; default ~/.cache/kaudit, or /var/cache/kaudit as root), KAUDIT_OPENSEARCH_HEAP (default 512m),
# KAUDIT_OPENSEARCH_START_TIMEOUT (seconds, default 120), KAUDIT_OPENSEARCH_JAVA and KAUDIT_OPENSEARCH_MVN.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${KAUDIT_OPENSEARCH_VERSION:-2.19.6}"
if [[ "$(id -u)" == 0 ]]; then DEFAULT_CACHE=/var/cache/kaudit; else DEFAULT_CACHE="${HOME:-/tmp}/.cache/kaudit"; fi
CACHE_ROOT="${KAUDIT_OPENSEARCH_CACHE:-$DEFAULT_CACHE}"
CACHE="$CACHE_ROOT/opensearch-$VERSION"
HEAP="${KAUDIT_OPENSEARCH_HEAP:-512m}"
JAVA="${KAUDIT_OPENSEARCH_JAVA:-java}"
MVN="${KAUDIT_OPENSEARCH_MVN:-mvn}"
START_TIMEOUT="${KAUDIT_OPENSEARCH_START_TIMEOUT:-120}"
RUN_USER=kaudit-opensearch

SERVICE=opensearch.sh
# shellcheck source=../lib/service.sh
source "$HERE/../lib/service.sh"

check() {
  java_check "$JAVA" "$MVN" "$CACHE/.complete" OpenSearch || return 3
  if [[ "$(id -u)" == 0 ]] && ! command -v setpriv >/dev/null 2>&1; then
    say "cannot run OpenSearch: setpriv (util-linux) not found on PATH; as root the node runs as $RUN_USER through it"
    return 3
  fi
}

# The module's descriptor and security policy, as the distribution's modules/transport-netty4 has them.
write_module_files() {
  local mod="$1" classname
  classname="$(cd "$mod" && unzip -Z1 "transport-netty4-client-$VERSION.jar" 2>/dev/null | sed -n 's#^\(org/opensearch/transport/Netty4[A-Za-z]*Plugin\)\.class$#\1#p' | head -n1 | tr / .)"
  [[ -n "$classname" ]] || classname=org.opensearch.transport.Netty4Plugin
  cat >"$mod/plugin-descriptor.properties" <<EOT
description=Netty 4 based HTTP and transport layer (laid out by kaudit's scripts/opensearch/opensearch.sh)
version=$VERSION
name=transport-netty4
classname=$classname
java.version=17
opensearch.version=$VERSION
extended.plugins=
has.native.controller=false
EOT
  # What Netty does under the server's security manager: opens and accepts sockets, reads the kernel's accept backlog,
  # and looks up and sets its threads' context class loader (on shutdown too: without getClassLoader a stop hangs for
  # 30 s on a listener notification the manager refuses).
  cat >"$mod/plugin-security.policy.tmp" <<'EOT'
grant codeBase "${codebase.netty-common}" {
  permission java.net.SocketPermission "*", "accept,connect";
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.lang.RuntimePermission "getClassLoader";
  permission java.lang.RuntimePermission "setContextClassLoader";
};
grant codeBase "${codebase.netty-transport}" {
  permission java.util.PropertyPermission "sun.nio.ch.bugLevel", "write";
};
EOT
  mv -f "$mod/plugin-security.policy.tmp" "$mod/plugin-security.policy"
}

fetch() {
  [[ -f "$CACHE/.complete" ]] && return 0
  check || exit 3
  mkdir -p "$CACHE"
  chmod 755 "$CACHE_ROOT" "$CACHE" 2>/dev/null || true
  # Several test files may start nodes at once: one fetches, the others wait for it.
  exec 9>"$CACHE/.lock"
  flock 9
  if [[ -f "$CACHE/.complete" ]]; then exec 9>&-; return 0; fi
  rm -rf "$CACHE/tmp"
  mkdir -p "$CACHE/tmp"
  local t0 t1
  t0=$(date +%s%N)
  say "fetching OpenSearch $VERSION from Maven Central into $CACHE (once) ..."
  if ! "$MVN" -B -ntp -f "$HERE/pom.xml" "-Dopensearch.version=$VERSION" dependency:copy-dependencies \
      "-DoutputDirectory=$CACHE/tmp/lib" >"$CACHE/fetch.log" 2>&1 \
    || ! "$MVN" -B -ntp -f "$HERE/netty4/pom.xml" "-Dopensearch.version=$VERSION" dependency:copy-dependencies \
      "-DoutputDirectory=$CACHE/tmp/modules/transport-netty4" >>"$CACHE/fetch.log" 2>&1; then
    tail -n 30 "$CACHE/fetch.log" >&2
    die "mvn could not fetch OpenSearch $VERSION (full log: $CACHE/fetch.log)"
  fi
  # A jar in both lib/ and a module is "jar hell" to the server: the module keeps only what lib/ lacks.
  local j
  for j in "$CACHE/tmp/modules/transport-netty4"/*.jar; do
    [[ -e "$CACHE/tmp/lib/$(basename "$j")" ]] && rm -f "$j"
  done
  write_module_files "$CACHE/tmp/modules/transport-netty4"
  t1=$(date +%s%N)
  rm -rf "$CACHE/lib" "$CACHE/modules"
  mv "$CACHE/tmp/lib" "$CACHE/lib"
  mv "$CACHE/tmp/modules" "$CACHE/modules"
  rm -rf "$CACHE/tmp"
  chmod -R a+rX "$CACHE"
  touch "$CACHE/.complete"
  say "fetched $(ls "$CACHE"/lib/*.jar | wc -l) jars ($(du -sh "$CACHE" | cut -f1)) in $(( (t1 - t0) / 1000000 )) ms"
  exec 9>&-
}



write_config() {
  local dir="$1" port="$2" tport="$3"
  mkdir -p "$dir/config" "$dir/data" "$dir/logs" "$dir/tmp" "$dir/plugins"
  cat >"$dir/config/opensearch.yml" <<EOT
# Written by scripts/opensearch/opensearch.sh: one node for tests only, on loopback, no security plugin.
cluster.name: kaudit-test
node.name: kaudit-test-node
path.data: $dir/data
path.logs: $dir/logs
network.host: 127.0.0.1
http.port: $port
transport.port: $tport
discovery.type: single-node
# A test machine's disk may be fuller than the default watermarks allow; they would make indices read-only.
cluster.routing.allocation.disk.threshold_enabled: false
EOT
  cat >"$dir/config/log4j2.properties" <<'EOT'
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:opensearch.logs.base_path}${sys:file.separator}node.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{ISO8601}][%-5p][%c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
EOT
  # The server reads jvm.options only through its launcher; this script passes the flags itself. An empty file keeps
  # tools that look for it quiet.
  : >"$dir/config/jvm.options"
}

start() {
  local dir="" port="" tport="" watch=""
  while (($#)); do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      --port) port="$2"; shift 2 ;;
      --transport-port) tport="$2"; shift 2 ;;
      --watch-pid) watch="$2"; shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  fetch
  local created=0
  if [[ -z "$dir" ]]; then dir="$(mktemp -d "${TMPDIR:-/tmp}/kaudit-opensearch.XXXXXX")"; created=1; fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/node.pid" ]] && kill -0 "$(cat "$dir/node.pid")" 2>/dev/null; then
    die "a node is already running from $dir (pid $(cat "$dir/node.pid"))"
  fi
  if [[ ! -f "$dir/config/opensearch.yml" ]]; then
    [[ -n "$port" ]] || port="$(free_port)"
    [[ -n "$tport" ]] || tport="$(free_port)"
    write_config "$dir" "$port" "$tport"
  else
    port="$(sed -n 's/^http.port: //p' "$dir/config/opensearch.yml")"
  fi
  if [[ -w "$CACHE/modules/transport-netty4" ]]; then write_module_files "$CACHE/modules/transport-netty4"; fi
  # The server's home: lib/ and modules/ from the cache, its own config, data and logs.
  ln -sfn "$CACHE/lib" "$dir/lib"
  ln -sfn "$CACHE/modules" "$dir/modules"

  local runas=()
  if [[ "$(id -u)" == 0 ]]; then
    if ! id "$RUN_USER" >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin "$RUN_USER" 2>/dev/null || id "$RUN_USER" >/dev/null 2>&1 \
        || die "cannot create the system user $RUN_USER to run OpenSearch (it refuses to run as root)"
    fi
    chown -R "$RUN_USER:" "$dir"
    chmod 755 "$dir"
    # Every directory above the node's dir and the cache must be traversable by that user.
    local p
    for p in "$dir" "$CACHE"; do
      while [[ "$p" != / ]]; do p="$(dirname "$p")"; [[ -x "$p" ]] && chmod o+x "$p" 2>/dev/null || true; done
    done
    runas=(setpriv "--reuid=$(id -u "$RUN_USER")" "--regid=$(id -g "$RUN_USER")" --init-groups --)
  fi

  if [[ -s "$dir/node.out" ]]; then cat "$dir/node.out" >>"$dir/node.previous.out"; fi
  : >"$dir/node.out"
  [[ "$(id -u)" == 0 ]] && chown "$RUN_USER:" "$dir/node.out"
  "${runas[@]}" "$JAVA" -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Xss1m \
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true -Djava.locale.providers=SPI,COMPAT \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    "-Djava.io.tmpdir=$dir/tmp" \
    "-Dopensearch.path.home=$dir" "-Dopensearch.path.conf=$dir/config" \
    -Dopensearch.distribution.type=tar -Dopensearch.bundled_jdk=false \
    -cp "$dir/lib/*" org.opensearch.bootstrap.OpenSearch </dev/null >>"$dir/node.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/node.pid"
  if [[ -n "$watch" ]]; then
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
  until curl -fsS "http://127.0.0.1:$port/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1; do
    local failure=""
    if ! kill -0 "$pid" 2>/dev/null; then failure="the node exited during start-up"
    elif ((SECONDS > deadline)); then failure="the node did not start within ${START_TIMEOUT}s"; kill -KILL "$pid" 2>/dev/null || true
    fi
    if [[ -n "$failure" ]]; then
      tail -n 40 "$dir/logs/node.log" "$dir/node.out" >&2 2>/dev/null || true
      if grep -qs 'BindException\|Address already in use' "$dir/logs/node.log" "$dir/node.out"; then failure+=" (port in use)"; fi
      if ((created)); then rm -rf "$dir"; die "$failure"; fi
      die "$failure (logs in $dir)"
    fi
    sleep 0.3
  done
  echo "OPENSEARCH_VERSION=$VERSION"
  echo "OPENSEARCH_DIR=$dir"
  echo "OPENSEARCH_PID=$pid"
  echo "OPENSEARCH_URL=http://127.0.0.1:$port"
}

stop() { stop_dir node.pid node "$@"; }

service_main "$@"
