# Shared by the scripts that run a real server for kaudit's tests and benchmarks (kafka.sh, opensearch.sh, moto.sh):
# messages, free loopback ports, stopping a process politely, the java check and the command dispatch. Sourced, not
# run; the sourcing script sets SERVICE (its name in messages) first.

say() { printf '%s: %s\n' "$SERVICE" "$*" >&2; }
die() { say "$*"; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port nobody listens on, between 20000 and 45000, and not one this script handed out already.
TAKEN=" "
free_port() {
  local p i
  for i in $(seq 1 500); do
    p=$(((RANDOM % 25000) + 20000))
    [[ "$TAKEN" == *" $p "* ]] && continue
    if ! port_in_use "$p"; then TAKEN+="$p "; echo "$p"; return 0; fi
  done
  die "no free port found on 127.0.0.1"
}

# stop_pid PID WHAT SECONDS: SIGTERM, then SIGKILL if PID is still there after SECONDS; returns once it is gone.
stop_pid() {
  local pid="$1" what="$2" seconds="$3" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 $((seconds * 5))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  say "$what $pid did not stop within ${seconds}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# stop_dir "$@" with PIDFILE WHAT set by the caller: `stop --dir D [--keep]` for a server laid out in a directory.
stop_dir() {
  local pidfile="$1" what="$2" dir="" keep=0
  shift 2
  while (($#)); do
    case "$1" in
      --dir) dir="$2"; shift 2 ;;
      --keep) keep=1; shift ;;
      *) die "stop: unknown option $1" ;;
    esac
  done
  [[ -n "$dir" ]] || die "stop: --dir is required"
  if [[ -f "$dir/$pidfile" ]]; then
    stop_pid "$(cat "$dir/$pidfile")" "$what" 30
    rm -f "$dir/$pidfile"
  fi
  if ((!keep)); then rm -rf "$dir"; fi
}

# java_check JAVA MVN CACHE_DONE WHAT: exit status 3 with the reason when java 17+ (and mvn, unless the cache is
# filled) cannot be used to run WHAT.
java_check() {
  local java="$1" mvn="$2" done_file="$3" what="$4" missing=() major
  command -v "$java" >/dev/null 2>&1 || missing+=("java ($java)")
  if [[ ! -f "$done_file" ]]; then command -v "$mvn" >/dev/null 2>&1 || missing+=("mvn ($mvn)"); fi
  if ((${#missing[@]})); then
    say "cannot run $what: ${missing[*]} not found on PATH (need Java 17+ and Maven 3.6+, or a filled cache at $(dirname "$done_file"))"
    return 3
  fi
  major="$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  if [[ -n "$major" && "${major%%.*}" -lt 17 ]]; then
    say "cannot run $what: java is version $major; it needs Java 17+"
    return 3
  fi
}

# The scripts' commands: check, fetch, start [options], stop [options]; anything else prints the usage at the head
# of the script (its comment block up to `set -euo`).
service_main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    check) check ;;
    fetch) fetch ;;
    start) start "$@" ;;
    stop) stop "$@" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}
