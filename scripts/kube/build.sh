#!/usr/bin/env bash
# Builds the local clusters' binaries: for `make demo` and the end-to-end tests, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, etcd, kwok and kwokctl; for the real node
# (node.sh), also kubelet, kube-proxy, containerd and kube-router.
# Usage: build.sh [kubernetes|kubectl|etcd|kwok|containerd|kube-router]...
#   (no argument: kubernetes etcd kwok; kubectl: that binary alone)
# Everything comes from the Go module proxy (the only source these machines reach),
# pinned by scripts/versions.env and cached under .tools/<name>-<version>/, so a
# second run only checks stamps and returns at once.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Pinned versions: KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION, CONTAINERD_VERSION, KUBE_ROUTER_VERSION.
# shellcheck source=/dev/null
source "$ROOT/scripts/versions.env"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS/bin"

# Static, reproducible binaries; -p=2 matches the 2-core machines (more only thrashes).
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false -p=2"

link() { ln -sfn "$1" "$TOOLS/bin/$(basename "$1")"; }
now() { date +%s; }

# once DIR WHAT COMMAND...: unless DIR holds the stamp of a finished build, empty DIR and run COMMAND to fill it;
# a build cut short leaves no stamp, so the next run starts it again.
once() {
  local dir=$1 what=$2 t0
  shift 2
  [[ -f $dir/.complete ]] && return
  t0=$(now)
  rm -rf "$dir" && mkdir -p "$dir"
  "$@"
  touch "$dir/.complete"
  echo "built $what in $(($(now) - t0))s"
}

# --- Kubernetes ----------------------------------------------------------------
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/*
# staging module with ./staging/src/..., which the module zip lacks. A wrapper
# module requires it and points each staging module at its published v0.NN.P tag.
build_kubernetes() {
  local v=$KUBERNETES_VERSION dir="$TOOLS/kubernetes-$KUBERNETES_VERSION" b
  local bins=("$@") missing=() pkgs=()
  for b in "${bins[@]}"; do [[ -x $dir/bin/$b ]] || missing+=("$b"); done
  if ((${#missing[@]})); then
    local staging="v0.${v#v1.}" src="$dir/src" t0
    mkdir -p "$src" "$dir/bin"
    go mod download "k8s.io/kubernetes@$v"
    local kmod
    kmod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
    {
      printf 'module agentforge.local/kubebuild\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$v"
      awk '/=> \.\/staging\//{print $1}' "$kmod" | while read -r m; do
        if [[ $m == k8s.io/sample-* ]]; then
          # Example modules, required by kubernetes' tests only and not published
          # for every patch release: an empty local stub satisfies the module graph.
          mkdir -p "$src/stub/${m#k8s.io/}"
          printf 'module %s\n' "$m" >"$src/stub/${m#k8s.io/}/go.mod"
          printf '\t%s => ./stub/%s\n' "$m" "${m#k8s.io/}"
        else
          printf '\t%s => %s %s\n' "$m" "$m" "$staging"
        fi
      done
      printf ')\n'
    } >"$src/go.mod"
    # The version the binaries report (kube-apiserver --version, /version, kubectl
    # version); without it they say v0.0.0-master and clients misjudge features.
    local ld="-s -w" k
    for k in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $k.gitVersion=$v -X $k.gitMajor=1 -X $k.gitMinor=$(cut -d. -f2 <<<"$v")"
      ld+=" -X $k.gitTreeState=clean -X $k.buildDate=1970-01-01T00:00:00Z"
    done
    for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    # One go build for every binary: shared packages compile once and the links run side by side.
    t0=$(now)
    (cd "$src" && go build -mod=mod -ldflags "$ld" -o "$dir/bin/" "${pkgs[@]}")
    echo "built ${missing[*]} $v in $(($(now) - t0))s"
  fi
  for b in "${bins[@]}"; do link "$dir/bin/$b"; done
}

# --- etcd ----------------------------------------------------------------------
# go.etcd.io/etcd/server/v3 holds the etcd main package but replaces its sibling
# modules with ../ paths, so it too is built through a wrapper module.
install_etcd() {
  local v=$1 dir=$2
  mkdir -p "$dir/src"
  printf 'module agentforge.local/etcdbuild\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$v" >"$dir/src/go.mod"
  (cd "$dir/src" && go get "go.etcd.io/etcd/server/v3@$v" \
    "go.etcd.io/etcd/api/v3@$v" "go.etcd.io/etcd/client/pkg/v3@$v" \
    "go.etcd.io/etcd/client/v3@$v" "go.etcd.io/etcd/pkg/v3@$v" &&
    go build -ldflags "-s -w" -o "$dir/etcd" go.etcd.io/etcd/server/v3)
}
build_etcd() {
  local v=$ETCD_VERSION dir="$TOOLS/etcd-$ETCD_VERSION"
  once "$dir" "etcd $v" install_etcd "$v" "$dir"
  link "$dir/etcd"
}

# --- kwok ----------------------------------------------------------------------
# kwok's go.mod has no replace directives, so plain `go install` works.
install_kwok() {
  local v=$1 dir=$2 src
  GOBIN="$dir" go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" \
    "sigs.k8s.io/kwok/cmd/kwok@$v" "sigs.k8s.io/kwok/cmd/kwokctl@$v"
  # kwok's default Stages (node heartbeat, pod ready/delete), as shipped in the same
  # module: cluster.sh passes them with its own, since kwokctl drops every default
  # Stage as soon as one Stage is given.
  src=$(go mod download -json "sigs.k8s.io/kwok@$v" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  mkdir -p "$dir/stages"
  cp "$src"/kustomize/stage/node/fast/node-initialize.yaml \
    "$src"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    "$src"/kustomize/stage/pod/fast/pod-ready.yaml \
    "$src"/kustomize/stage/pod/fast/pod-delete.yaml "$dir/stages/"
}
build_kwok() {
  local v=$KWOK_VERSION dir="$TOOLS/kwok-$KWOK_VERSION"
  once "$dir" "kwok+kwokctl $v" install_kwok "$v" "$dir"
  link "$dir/kwok"
  link "$dir/kwokctl"
}

# --- containerd ------------------------------------------------------------------
# The CRI runtime of the real node: the daemon, its runc shim and ctr (image import,
# cleanup). Its go.mod has no replace directives, so plain `go install` works; without
# cgo the btrfs snapshotter drops out, which the node (overlayfs) does not use.
build_containerd() {
  local v=$CONTAINERD_VERSION dir="$TOOLS/containerd-$CONTAINERD_VERSION" m=github.com/containerd/containerd/v2
  once "$dir" "containerd, containerd-shim-runc-v2, ctr $v" env GOBIN="$dir" go install -tags urfave_cli_no_docs \
    -ldflags "-s -w -X $m/version.Version=$v -X $m/version.Package=$m" \
    "$m/cmd/containerd@$v" "$m/cmd/containerd-shim-runc-v2@$v" "$m/cmd/ctr@$v"
  link "$dir/containerd"
  link "$dir/containerd-shim-runc-v2"
  link "$dir/ctr"
}

# --- kube-router -----------------------------------------------------------------
# NetworkPolicy enforcement on the real node (its firewall controller only; no
# routing, service proxy or CNI). Plain `go install` works: no replace directives.
build_kube_router() {
  local v=$KUBE_ROUTER_VERSION dir="$TOOLS/kube-router-$KUBE_ROUTER_VERSION"
  once "$dir" "kube-router $v" env GOBIN="$dir" go install \
    -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$v" \
    "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$v"
  link "$dir/kube-router"
}

(($#)) || set -- kubernetes etcd kwok
for component in "$@"; do
  case $component in
    # kubelet and kube-proxy share most packages with the other four: one go build compiles them once.
    kubernetes) build_kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy ;;
    kubectl) build_kubernetes kubectl ;;
    etcd) build_etcd ;;
    kwok) build_kwok ;;
    containerd) build_containerd ;;
    kube-router) build_kube_router ;;
    *)
      echo "build.sh: unknown component '$component' (kubernetes, kubectl, etcd, kwok, containerd, kube-router)" >&2
      exit 2
      ;;
  esac
done
