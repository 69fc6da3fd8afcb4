#!/usr/bin/env bash
# Installs the pinned toolchain into the git-ignored .tools/ and .venv/ folders of this checkout.
# A second run reuses what is there. Only package registries are used (Go module proxy, PyPI, Debian).
#
#   install-tools.sh [all]           everything `make test` uses (`make tools`)
#   install-tools.sh render          what the render tier (`make test-render`) uses: helm, helm 3 and the oldest helms,
#                                    the render servers, .venv and the Kubernetes schemas, promtool, checkov, ct,
#                                    kubectl, and the Go modules whose CRDs the tier validates against
#   install-tools.sh demo            what `make demo` uses: helm, the control plane, kubelet, kube-proxy, containerd,
#                                    kube-router (the images are `make images`)
#   install-tools.sh demo-kwok       what `make demo` on the simulated cluster uses: helm, the control plane, kwok
#   install-tools.sh demo-kubectl    what `make demo` on a cluster of your own uses: helm and kubectl
#
# Each step's output goes to .tools/logs/<step>.log and is shown only when the step fails (scripts/steps.sh);
# steps run two at a time (STEPS_JOBS), which on 2 cores fills the time one build spends linking or downloading.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=versions.env
source "$ROOT/scripts/versions.env"
# shellcheck source=steps.sh
source "$ROOT/scripts/steps.sh"
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

# The link flags of the helm CLI, and of the render server that stands for it (build_render_servers).
HELM_LDFLAGS="-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
build_helm() {
  go_tool helm "$HELM_VERSION" helm.sh/helm/v4/cmd/helm "$HELM_LDFLAGS"
}

# Without a cluster, Helm 3 assumes Kubernetes 1.20 unless told at build time: 1.30, the chart's oldest.
K8S_MINOR="-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=30 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=30"
# The link flags of the oldest supported helm, and of the render server that stands for it.
HELM_OLDEST_LDFLAGS="-X helm.sh/helm/v3/internal/version.version=$HELM_OLDEST_VERSION $K8S_MINOR"

# The newest Helm 3, the oldest Helm the chart supports and the one before it, which the chart refuses.
build_helm3() {
  go_tool helm3 "$HELM3_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION"
  go_tool helm-oldest "$HELM_OLDEST_VERSION" helm.sh/helm/v3/cmd/helm "$HELM_OLDEST_LDFLAGS"
  go_tool helm-below-oldest "$HELM_BELOW_OLDEST_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_BELOW_OLDEST_VERSION $K8S_MINOR"
}

build_promtool() {
  go_module_tool promtool github.com/prometheus/prometheus "$PROMETHEUS_VERSION" ./cmd/promtool \
    "-s -w -X github.com/prometheus/common/version.Version=$(prometheus_release)"
}

# The OCI registry (CNCF distribution) that `make publish` and tests/test_distribution.py push charts to.
build_registry() {
  go_tool registry "$DISTRIBUTION_VERSION" github.com/distribution/distribution/v3/cmd/registry \
    "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION"
}

# The render servers the tests render through: the pinned helm's template code (and for the newest, kubeconform's
# validator) in one long-lived process each. Their go.mod files pin helm at HELM_VERSION, HELM_OLDEST_VERSION and
# kubeconform at KUBECONFORM_VERSION (tests/test_compatibility.py checks them).
# Each is linked with the flags of the helm CLI it stands for: -X sets a variable of any package in the build,
# internal ones included, so .Capabilities.HelmVersion (and helm-oldest's Kubernetes default) is the CLI's.
build_render_servers() {
  go_local_tool render-server "$ROOT/scripts/render-server" "$HELM_LDFLAGS"
  go_local_tool render-server-oldest "$ROOT/scripts/render-server/oldest" "$HELM_OLDEST_LDFLAGS"
}

# chart-testing (ct), with the yamllint and yamale configurations its release ships (ct lint reads them; the two
# linters come with .venv, pinned in pyproject.toml).
build_ct() {
  # Built in its module's source: `go install ...@version` asks the proxy for the module's version list, which this
  # proxy refuses for chart-testing.
  go_module_tool ct github.com/helm/chart-testing/v3 "$CHART_TESTING_VERSION" ./ct \
    "-s -w -X github.com/helm/chart-testing/v3/ct/cmd.Version=$CHART_TESTING_VERSION"
  local etc="$TOOLS/ct-$CHART_TESTING_VERSION/etc" src
  if [[ ! -f $etc/lintconf.yaml ]]; then
    src="$(go mod download -json "github.com/helm/chart-testing/v3@$CHART_TESTING_VERSION" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    mkdir -p "$etc" && cp "$src/etc/chart_schema.yaml" "$src/etc/lintconf.yaml" "$etc/"
  fi
  ln -sfn "$etc" "$TOOLS/ct-etc"
}

# The Go modules (in the module cache) whose CustomResourceDefinitions the render tier validates objects against
# (tests/harness/crdschema.py downloads each on first use; here they are fetched ahead, with the other tools).
crd_modules() {
  go mod download github.com/cert-manager/cert-manager@"$CERT_MANAGER_VERSION" \
    github.com/external-secrets/external-secrets@"$EXTERNAL_SECRETS_VERSION" github.com/traefik/traefik/v3@"$TRAEFIK_VERSION"
}

python_tools() {
  python_env
  kube_schemas
}

main() {
  local what=${1:-all}
  command -v go >/dev/null || { log "go is required (Go toolchain with the module proxy)"; exit 1; }
  local kube="bash $ROOT/scripts/kube/build.sh"
  # No duration is shown beside a step that builds (COLD_SECONDS 0): a figure written here would be a measurement of
  # another machine and day. steps.sh records every step's elapsed time in .tools/logs/durations.tsv.
  local k8s_what="kube-apiserver, controller-manager, scheduler, kubectl, kubelet, kube-proxy $KUBERNETES_VERSION"
  # Longest first: with two at a time, the control plane builds while the shorter steps take turns beside it.
  case $what in
    demo)
      step kubernetes "$k8s_what" 0 $kube kubernetes
      step helm "helm $HELM_VERSION" 0 build_helm
      step containerd "containerd $CONTAINERD_VERSION" 0 $kube containerd
      step kube-router "kube-router $KUBE_ROUTER_VERSION" 0 $kube kube-router
      step etcd "etcd $ETCD_VERSION" 0 $kube etcd
      ;;
    demo-kwok)
      step kubernetes "$k8s_what" 0 $kube kubernetes
      step helm "helm $HELM_VERSION" 0 build_helm
      step etcd "etcd $ETCD_VERSION" 0 $kube etcd
      step kwok "kwok and kwokctl $KWOK_VERSION" 0 $kube kwok
      ;;
    demo-kubectl)
      step kubectl "kubectl $KUBERNETES_VERSION" 0 $kube kubectl
      step helm "helm $HELM_VERSION" 0 build_helm
      ;;
    render)
      step helm "helm $HELM_VERSION" 0 build_helm
      step helm3 "helm $HELM3_VERSION, $HELM_OLDEST_VERSION and $HELM_BELOW_OLDEST_VERSION" 0 build_helm3
      step python ".venv (pytest, pinned in pyproject.toml) and the Kubernetes schemas" 0 python_tools
      step promtool "promtool $PROMETHEUS_VERSION" 0 build_promtool
      step render-servers "the render servers (helm's template code and kubeconform)" 0 build_render_servers
      step checkov "checkov $CHECKOV_VERSION" 0 checkov_env
      step ct "chart-testing (ct) $CHART_TESTING_VERSION" 0 build_ct
      step kubectl "kubectl $KUBERNETES_VERSION" 0 $kube kubectl
      step crd-modules "the Go modules of cert-manager, External Secrets and Traefik (their CRDs)" 0 crd_modules
      ;;
    all)
      step kubernetes "$k8s_what" 0 $kube kubernetes
      step helm "helm $HELM_VERSION" 0 build_helm
      step python ".venv (pytest, pinned in pyproject.toml) and the Kubernetes schemas" 0 python_tools
      step helm3 "helm $HELM3_VERSION, $HELM_OLDEST_VERSION and $HELM_BELOW_OLDEST_VERSION" 0 build_helm3
      step render-servers "the render servers (helm's template code and kubeconform)" 0 build_render_servers
      step promtool "promtool $PROMETHEUS_VERSION" 0 build_promtool
      step registry "the OCI registry $DISTRIBUTION_VERSION" 0 build_registry
      step checkov "checkov $CHECKOV_VERSION" 0 checkov_env
      step ct "chart-testing (ct) $CHART_TESTING_VERSION" 0 build_ct
      step etcd "etcd $ETCD_VERSION" 0 $kube etcd
      step kwok "kwok and kwokctl $KWOK_VERSION" 0 $kube kwok
      step containerd "containerd $CONTAINERD_VERSION" 0 $kube containerd
      step kube-router "kube-router $KUBE_ROUTER_VERSION" 0 $kube kube-router
      step test-servers "PostgreSQL, Redis, bubblewrap, gnupg, curl, Chromium (Debian packages)" 0 \
        bash "$ROOT/scripts/install-test-servers.sh"
      step crd-modules "the Go modules of cert-manager, External Secrets and Traefik (their CRDs)" 0 crd_modules
      step app "AgentForge's virtualenvs and frontend build (AGENTFORGE_SRC)" 0 bash "$ROOT/scripts/install-app.sh"
      ;;
    *) log "unknown selection '$what': all, render, demo, demo-kwok or demo-kubectl"; exit 2 ;;
  esac
  steps_wait
}

main "$@"
