#!/usr/bin/env bash
# A real AWS CloudWatch Logs API server on 127.0.0.1 for kaudit's tests: moto's server mode (PyPI `moto[server]`),
# installed once into a virtualenv under a cache directory. No AWS account, no network beyond PyPI for the install.
#
#   moto.sh check                      exit 0 when python3 with venv is usable; otherwise print why and exit 3
#   moto.sh fetch                      install moto into the cache once (prints how long it took)
#   moto.sh start [--port P] [--watch-pid PID]
#                                      start a server in the background, wait until it answers, print MOTO_* lines
#                                      (MOTO_ENDPOINT=http://127.0.0.1:P, MOTO_PID); --watch-pid stops it when PID exits
#   moto.sh stop --pid PID             stop a server started here
#
# Environment: KAUDIT_MOTO_VERSION (default below), KAUDIT_MOTO_CACHE (root of the cache, default ~/.cache/kaudit;
# the virtualenv goes to <root>/moto-<version>), KAUDIT_MOTO_PYTHON (default python3).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VERSION="${KAUDIT_MOTO_VERSION:-5.2.6}"
CACHE_ROOT="${KAUDIT_MOTO_CACHE:-${HOME:-/tmp}/.cache/kaudit}"
VENV="$CACHE_ROOT/moto-$VERSION"
PY="${KAUDIT_MOTO_PYTHON:-python3}"

SERVICE=moto.sh
# shellcheck source=../lib/service.sh
source "$HERE/../lib/service.sh"

check() {
  if [[ -f "$VENV/.complete" ]]; then return 0; fi
  if ! command -v "$PY" >/dev/null 2>&1; then say "cannot run moto: $PY not found on PATH"; return 3; fi
  if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then say "cannot run moto: $PY lacks the venv/ensurepip modules (Debian: apt-get install python3-venv)"; return 3; fi
}

fetch() {
  [[ -f "$VENV/.complete" ]] && return 0
  # Debian's system python3 needs python3-venv for `python3 -m venv`: install it when we can (CI runs as root).
  if ! check 2>/dev/null && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing python3-venv with apt-get ..."
    (apt-get install -y -q python3-venv >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q python3-venv >/dev/null 2>&1; }) || true
  fi
  check || exit 3
  mkdir -p "$CACHE_ROOT"
  # Several test files may start servers at once: one installs, the others wait for it.
  exec 9>"$CACHE_ROOT/.moto-$VERSION.lock"
  flock 9
  if [[ -f "$VENV/.complete" ]]; then exec 9>&-; return 0; fi
  rm -rf "$VENV"
  local t0 t1
  t0=$(date +%s%N)
  say "installing moto[server]==$VERSION from PyPI into $VENV (once) ..."
  "$PY" -m venv "$VENV" >"$CACHE_ROOT/moto-fetch.log" 2>&1 || { cat "$CACHE_ROOT/moto-fetch.log" >&2; die "python3 -m venv failed"; }
  if ! "$VENV/bin/pip" install --disable-pip-version-check -q "moto[server]==$VERSION" >>"$CACHE_ROOT/moto-fetch.log" 2>&1; then
    tail -n 30 "$CACHE_ROOT/moto-fetch.log" >&2
    die "pip could not install moto[server]==$VERSION (full log: $CACHE_ROOT/moto-fetch.log)"
  fi
  touch "$VENV/.complete"
  t1=$(date +%s%N)
  say "installed in $(( (t1 - t0) / 1000000 )) ms"
  exec 9>&-
}

start() {
  local port="" watch=""
  while (($#)); do
    case "$1" in
      --port) port="$2"; shift 2 ;;
      --watch-pid) watch="$2"; shift 2 ;;
      *) die "start: unknown option $1" ;;
    esac
  done
  fetch
  [[ -n "$port" ]] || port="$(free_port)"
  local log
  log="$(mktemp "${TMPDIR:-/tmp}/kaudit-moto.XXXXXX.log")"
  # Fake credentials for moto's own boto use; the server accepts any signature.
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
  local pid=$!
  local i
  for i in $(seq 1 150); do
    if ! kill -0 "$pid" 2>/dev/null; then tail -n 20 "$log" >&2; die "moto_server exited at start (port $port in use?)"; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.2
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { kill "$pid" 2>/dev/null; die "moto_server did not listen on $port within 30 s (log: $log)"; }
  if [[ -n "$watch" ]]; then
    (
      while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
      kill "$pid" 2>/dev/null || true
    ) >/dev/null 2>&1 </dev/null &
    disown
  fi
  echo "MOTO_ENDPOINT=http://127.0.0.1:$port"
  echo "MOTO_PID=$pid"
  echo "MOTO_LOG=$log"
}

stop() {
  local pid=""
  while (($#)); do
    case "$1" in
      --pid) pid="$2"; shift 2 ;;
      *) die "stop: unknown option $1" ;;
    esac
  done
  [[ -n "$pid" ]] || die "stop needs --pid"
  stop_pid "$pid" moto_server 5
}

service_main "$@"
