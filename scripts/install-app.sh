#!/usr/bin/env bash
# Installs what the app-conformance tier (tests/app/, marker `app`) runs, from the AgentForge source
# (AGENTFORGE_SRC, default ../shared/agentforge-src) into the git-ignored .tools/app/:
#   backend/, data-collector/  a virtualenv each, from the component's requirements.txt, constrained to the
#                              versions pinned in scripts/app-requirements/ (the two pin different httpx versions)
#   frontend/build/            the frontend built as docker/Dockerfile.frontend.prod's builder stage builds it
#                              (npm ci from its package-lock.json, then next build)
# Each is keyed by a hash of its inputs and rebuilt only when they change. The three run concurrently; their
# output goes to .tools/app/logs/ and is shown only when one fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="${AGENTFORGE_SRC:-$ROOT/../shared/agentforge-src}"
OUT="$ROOT/.tools/app"
LOGS="$OUT/logs"
mkdir -p "$LOGS"

log() { printf '[install-app] %s\n' "$*" >&2; }

if [[ ! -f "$SRC/backend/requirements.txt" ]]; then
  log "no AgentForge source at $SRC (set AGENTFORGE_SRC to a checkout): nothing installed; the app tier fails until it is there"
  exit 0
fi
SRC="$(cd "$SRC" && pwd)"
# Python 3.11.5 or later, as in today's python:3.11-slim (the pins in scripts/app-requirements/ need it): pyenv's
# first, since Debian 12's own python3.11 is 3.11.2.
PYTHON=""
for candidate in $(ls -d "$HOME"/.pyenv/versions/3.11*/bin/python3.11 2>/dev/null | sort -rV) \
    "$(command -v python3.11 || true)"; do
  if [[ -x $candidate ]] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11, 5))'; then
    PYTHON=$candidate
    break
  fi
done
[[ -n $PYTHON ]] || { log "Python 3.11.5 or later 3.11 is required (the upstream images run python:3.11-slim)"; exit 1; }

# fresh DIR KEY: true when DIR was installed from inputs hashing to KEY.
fresh() { [[ -f "$1/.installed" && "$(cat "$1/.installed")" == "$2" ]]; }

venv() {
  local component=$1 dir="$OUT/$1" pins="$ROOT/scripts/app-requirements/$1.txt" key
  key=$(cat "$SRC/$component/requirements.txt" "$pins" <("$PYTHON" --version) | sha256sum | cut -c1-16)
  fresh "$dir" "$key" && return
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --disable-pip-version-check --no-input \
    -r "$SRC/$component/requirements.txt" -c "$pins"
  echo "$key" >"$dir/.installed"
}

frontend() {
  local dir="$OUT/frontend" key
  key=$( (cd "$SRC/frontend" && find . -type f -not -path './node_modules/*' -not -path './.next/*' -print0 \
    | sort -z | xargs -0 sha256sum; node --version; sha256sum "$SRC/docker/Dockerfile.frontend.prod") \
    | sha256sum | cut -c1-16)
  fresh "$dir" "$key" && return
  rm -rf "$dir"
  mkdir -p "$dir"
  cp -r "$SRC/frontend" "$dir/build"
  chmod -R u+w "$dir/build"
  rm -rf "$dir/build/node_modules" "$dir/build/.next"
  # The Dockerfile copies /app/public, which the repository does not have (git keeps no empty folder): the upstream
  # build fails there. An empty public/ is what that COPY needs.
  mkdir -p "$dir/build/public"
  # The builder stage's ARG defaults (NEXT_PUBLIC_* are baked into the bundle at build time).
  local api ws
  api=$(sed -n 's/^ARG NEXT_PUBLIC_API_URL=//p' "$SRC/docker/Dockerfile.frontend.prod")
  ws=$(sed -n 's/^ARG NEXT_PUBLIC_WS_URL=//p' "$SRC/docker/Dockerfile.frontend.prod")
  (cd "$dir/build" && npm ci --no-audit --no-fund &&
    NEXT_TELEMETRY_DISABLED=1 NEXT_PUBLIC_API_URL="$api" NEXT_PUBLIC_WS_URL="$ws" npm run build)
  echo "$key" >"$dir/.installed"
}

command -v node >/dev/null || { log "Node.js is required to build the frontend (the image runs node:20)"; exit 1; }

pids=() names=(backend data-collector frontend)
start=$(date +%s)
venv backend >"$LOGS/backend.log" 2>&1 & pids+=($!)
venv data-collector >"$LOGS/data-collector.log" 2>&1 & pids+=($!)
frontend >"$LOGS/frontend.log" 2>&1 & pids+=($!)
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    log "${names[$i]} failed; its log ($LOGS/${names[$i]}.log):"
    tail -n 60 "$LOGS/${names[$i]}.log" >&2
    failed=1
  fi
done
((failed == 0)) || exit 1
log "ready in $(( $(date +%s) - start )) s: backend and data-collector virtualenvs, frontend build ($OUT)"
