#!/usr/bin/env bash
# Starts and stops a local OCI registry (CNCF distribution, built into .tools/ by scripts/install-tools.sh)
# on 127.0.0.1, to try `make publish` and for tests/servers/test_distribution.py. Plain HTTP (helm needs
# --plain-http), filesystem storage, no auth unless an htpasswd file is given.
#
#   scripts/registry.sh start [DIR] [PORT]  start a registry whose config, storage, log and pid file live in DIR
#                                           (default dist/registry); prints its address, 127.0.0.1:PORT
#                                           (a free port when PORT is omitted)
#   scripts/registry.sh stop [DIR]          stop it (TERM, then KILL after 10 s)
#
# Environment: REGISTRY_HTPASSWD=<file>  require basic auth (bcrypt entries, `htpasswd -B`)
#              REGISTRY_LIFETIME=<s>     stop the registry by itself after this many seconds (default: never)
#              REGISTRY_BIN              the registry binary (default .tools/bin/registry)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${REGISTRY_BIN:-$ROOT/.tools/bin/registry}"

die() { printf 'registry.sh: %s\n' "$*" >&2; exit 1; }

alive() { [[ -f "$1/registry.pid" ]] && kill -0 "$(cat "$1/registry.pid")" 2>/dev/null; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# True when nothing listens on 127.0.0.1:$1 (else the readiness probe below would hear the other server).
port_free() {
  python3 -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0)' "$1"
}

start() {
  local dir=$1 port=${2:-}
  [[ -x "$BIN" ]] || die "$BIN is missing: run \`make tools\`"
  mkdir -p "$dir/storage"
  dir="$(cd "$dir" && pwd)"
  if alive "$dir"; then
    die "a registry already runs from $dir (pid $(cat "$dir/registry.pid")); stop it first: $0 stop $dir"
  fi
  port=${port:-$(free_port)}
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  port_free "$port" || die "port $port on 127.0.0.1 is taken by another server"
  local auth=""
  if [[ -n "${REGISTRY_HTPASSWD:-}" ]]; then
    [[ -r "$REGISTRY_HTPASSWD" ]] || die "REGISTRY_HTPASSWD=$REGISTRY_HTPASSWD is not a readable file"
    auth=$(printf 'auth:\n  htpasswd:\n    realm: agentforge-local\n    path: %s\n' \
      "$(cd "$(dirname "$REGISTRY_HTPASSWD")" && pwd)/$(basename "$REGISTRY_HTPASSWD")")
  fi
  # A fixed http.secret silences the "random secret" warning; it only signs upload state, and this
  # registry is one process on the loopback interface.
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
$auth
http:
  addr: 127.0.0.1:$port
  secret: agentforge-local-registry
EOF
  local -a cmd=("$BIN" serve "$dir/config.yml")
  if [[ -n "${REGISTRY_LIFETIME:-}" ]]; then
    cmd=(timeout --signal=TERM "$REGISTRY_LIFETIME" "${cmd[@]}")
  fi
  # Detached from our stdout, so a caller that captures this script's output is not kept waiting.
  "${cmd[@]}" </dev/null >>"$dir/registry.log" 2>&1 &
  echo $! >"$dir/registry.pid"
  local code
  for _ in $(seq 1 100); do
    alive "$dir" || { cat "$dir/registry.log" >&2; die "the registry exited at start (port $port taken?)"; }
    # 200 without auth, 401 with it: either way the registry answers.
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/v2/" || true)
    if [[ "$code" == 200 || "$code" == 401 ]]; then
      echo "127.0.0.1:$port"
      return
    fi
    sleep 0.2
  done
  stop "$dir"
  die "the registry did not answer on 127.0.0.1:$port within 20 s; log: $dir/registry.log"
}

stop() {
  local dir=$1 pid
  if ! alive "$dir"; then
    rm -f "$dir/registry.pid"
    echo "registry.sh: no registry runs from $dir" >&2
    return
  fi
  pid=$(cat "$dir/registry.pid")
  kill -TERM "$pid"
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$dir/registry.pid"
}

case "${1:-}" in
  start) start "${2:-$ROOT/dist/registry}" "${3:-}" ;;
  stop) stop "${2:-$ROOT/dist/registry}" ;;
  *) die "usage: $0 start [DIR] [PORT] | stop [DIR]" ;;
esac
