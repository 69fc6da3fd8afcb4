#!/usr/bin/env bash
# Installs the Debian packages the tests use: the real PostgreSQL and Redis servers that
# tests/servers/test_real_servers.py and the app tier start on 127.0.0.1, bubblewrap, in which the app tier runs the
# rendered containers, gnupg for chart signing and curl for the release script (tests/servers/test_distribution.py),
# openssl for the test CAs of the TLS servers (tests/servers/test_external_services.py), busybox, whose shell and
# tools stand for the alpine PostgreSQL image's in the backup tests (tests/servers/test_backup.py), Chromium and a font
# for the real-pod tier's browser journey (tests/real/test_real_journey.py). Idempotent: does nothing when all are
# already there. The tests start their own servers on free ports in temp dirs; the packages' own services are not
# needed and are not started.
set -euo pipefail

log() { printf '[install-test-servers] %s\n' "$*" >&2; }

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; }
have_redis() { command -v redis-server >/dev/null && command -v redis-cli >/dev/null; }

packages=()
have_postgres || packages+=(postgresql)
have_redis || packages+=(redis-server)
command -v gpg >/dev/null || packages+=(gnupg)
command -v curl >/dev/null || packages+=(curl)
command -v bwrap >/dev/null || packages+=(bubblewrap)
command -v openssl >/dev/null || packages+=(openssl)
command -v busybox >/dev/null || packages+=(busybox)
[[ -x /usr/bin/chromium ]] || packages+=(chromium)
[[ -d /usr/share/fonts/truetype/dejavu ]] || packages+=(fonts-dejavu-core)
if ((${#packages[@]} == 0)); then
  log "PostgreSQL, Redis, bubblewrap, gnupg, curl, openssl, busybox and Chromium already installed"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "need root (or sudo) to install: ${packages[*]}"; exit 1; }
  sudo=(sudo)
fi
log "installing ${packages[*]}"
# RUNLEVEL=1: invoke-rc.d then leaves the packages' services stopped.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
have_postgres && have_redis || { log "installation did not provide initdb and redis-server"; exit 1; }
log "ready: $(redis-server --version | cut -d' ' -f1-3), PostgreSQL $(ls /usr/lib/postgresql | sort -V | tail -1)"
