#!/usr/bin/env bash
# Installs the pinned toolchain into the git-ignored .tools/ and .venv/ folders of this checkout.
# A second run reuses what is there. Only package registries are used (Go module proxy, PyPI).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

log() { printf '[install-tools] %s\n' "$*" >&2; }

# go_tool NAME VERSION PACKAGE [LDFLAGS]: go install PACKAGE@VERSION into .tools/<NAME>-<VERSION>/
# and link it as .tools/bin/NAME. The stamp file makes a second run a no-op.
go_tool() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  local dir="$TOOLS/$name-$version"
  if [[ ! -x "$dir/$(basename "${pkg%@*}")" ]]; then
    log "building $name $version (go install $pkg@$version)"
    GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "$pkg@$version"
  fi
  ln -sfn "$dir/$(basename "$pkg")" "$BIN/$name"
}

python_env() {
  local venv="$ROOT/.venv" stamp="$ROOT/.venv/.installed"
  local want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  log "creating .venv with the pinned Python dependencies"
  python3.11 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT"
  echo "$want" >"$stamp"
}

checkov_env() {
  # checkov pins many libraries of its own: it gets a virtualenv apart from the test harness.
  local venv="$TOOLS/checkov-$CHECKOV_VERSION"
  if [[ ! -x "$venv/bin/checkov" ]]; then
    log "installing checkov $CHECKOV_VERSION"
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  fi
  ln -sfn "$venv/bin/checkov" "$BIN/checkov"
}

main() {
  command -v go >/dev/null || { log "go is required (Go toolchain with the module proxy)"; exit 1; }
  go_tool helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  go_tool helm3 "$HELM3_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION"
  python_env
  checkov_env
  log "ready: $("$BIN/helm" version --short), helm3 $("$BIN/helm3" version --short)"
}

main "$@"
