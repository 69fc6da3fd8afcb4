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

# Python 3.11: on PATH, else where this machine image keeps it (pyenv).
PYTHON=$(command -v python3.11 || ls -d "$HOME"/.pyenv/versions/3.11*/bin/python3.11 2>/dev/null | tail -1 || true)
[[ -n $PYTHON ]] || { log "Python 3.11 is required"; exit 1; }

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

# go_module_tool NAME MODULE VERSION PACKAGE [LDFLAGS]: for modules whose go.mod has replace directives,
# which `go install pkg@version` refuses (prometheus): build PACKAGE inside the module's own source,
# fetched from the module proxy, so its replace directives apply. GOWORK=off: its go.work lists
# folders the module zip leaves out.
go_module_tool() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=${5:-}
  local dir="$TOOLS/$name-$version" src
  if [[ ! -x "$dir/$name" ]]; then
    log "building $name $version (go build $pkg in $module@$version)"
    src="$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    mkdir -p "$dir"
    (cd "$src" && GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/$name" "$pkg")
  fi
  ln -sfn "$dir/$name" "$BIN/$name"
}

# Prometheus' Go module version v0.MMM.P is release M.MM.P (v0.311.3 is 3.11.3).
prometheus_release() {
  local minor=${PROMETHEUS_VERSION#v0.}
  minor=${minor%%.*}
  printf '%d.%d.%s' $((minor / 100)) $((minor % 100)) "${PROMETHEUS_VERSION##*.}"
}

python_env() {
  local venv="$ROOT/.venv" stamp="$ROOT/.venv/.installed"
  local want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return; fi
  log "creating .venv with the pinned Python dependencies"
  "$PYTHON" -m venv --clear "$venv"  # --clear: a venv of another Python (pyenv's) is replaced whole
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT"
  echo "$want" >"$stamp"
}

checkov_env() {
  # checkov pins many libraries of its own: it gets a virtualenv apart from the test harness.
  local venv="$TOOLS/checkov-$CHECKOV_VERSION"
  if [[ ! -x "$venv/bin/checkov" ]]; then
    log "installing checkov $CHECKOV_VERSION"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  fi
  ln -sfn "$venv/bin/checkov" "$BIN/checkov"
}

# go_local_tool NAME DIR [LDFLAGS]: build the Go module in DIR (pinned by its go.mod and go.sum) into
# .tools/<NAME>-<hash of its sources>/ and link it as .tools/bin/NAME.
go_local_tool() {
  local name=$1 src=$2 ldflags=${3:-} hash dir
  hash="$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go <(echo "$ldflags") | sha256sum | cut -c1-16)"
  dir="$TOOLS/$name-$hash"
  if [[ ! -x "$dir/$name" ]]; then
    log "building $name ($src)"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dir/$name" .)
  fi
  ln -sfn "$dir/$name" "$BIN/$name"
}

# kubeconform's schema folder, made from the pinned kubernetes-validate package's strict schemas.
kube_schemas() {
  local out="$TOOLS/kube-schemas" want
  want="$(cat "$ROOT/scripts/kube-schemas.py" "$ROOT/pyproject.toml" "$ROOT/charts/agentforge/Chart.yaml" | sha256sum)"
  if [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$want" ]]; then return; fi
  rm -rf "$out"
  "$ROOT/.venv/bin/python" "$ROOT/scripts/kube-schemas.py" "$out" >&2
  echo "$want" >"$out/.stamp"
}

main() {
  command -v go >/dev/null || { log "go is required (Go toolchain with the module proxy)"; exit 1; }
  go_tool helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm \
    "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  go_tool helm3 "$HELM3_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION"
  # Without a cluster, Helm 3 assumes Kubernetes 1.20 unless told at build time: 1.30, the chart's oldest.
  local k8s="-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=30 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=30"
  go_tool helm-oldest "$HELM_OLDEST_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_OLDEST_VERSION $k8s"
  go_tool helm-below-oldest "$HELM_BELOW_OLDEST_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_BELOW_OLDEST_VERSION $k8s"
  go_module_tool promtool github.com/prometheus/prometheus "$PROMETHEUS_VERSION" ./cmd/promtool \
    "-s -w -X github.com/prometheus/common/version.Version=$(prometheus_release)"
  # The OCI registry (CNCF distribution) that `make publish` and tests/test_distribution.py push charts to.
  go_tool registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry \
    "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION"
  # The render servers the tests render through: the pinned helm's template code (and for the newest, kubeconform's
  # validator) in one long-lived process each. Their go.mod files pin helm at HELM_VERSION, HELM_OLDEST_VERSION and
  # kubeconform at KUBECONFORM_VERSION (tests/test_chart.py checks them).
  go_local_tool render-server "$ROOT/scripts/render-server"
  go_local_tool render-server-oldest "$ROOT/scripts/render-server/oldest" "$k8s"
  python_env
  kube_schemas
  checkov_env
  log "ready: $("$BIN/helm" version --short), helm3 $("$BIN/helm3" version --short)"
}

main "$@"
