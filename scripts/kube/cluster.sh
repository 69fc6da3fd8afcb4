#!/usr/bin/env bash
# A local Kubernetes control plane for the end-to-end `helm install` tests: a real
# kube-apiserver, etcd, kube-controller-manager and kube-scheduler run as plain
# processes by kwokctl (--runtime binary), and kwok simulates 3 nodes and their pods.
# Usage: cluster.sh up|down|status|kubeconfig
#   up          start (or reuse a healthy) cluster; prints the kubeconfig path
#   down        stop it and delete all of its state
#   status      exit 0 only when the API server answers
#   kubeconfig  print the kubeconfig path (use: export KUBECONFIG=$(cluster.sh kubeconfig))
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/scripts/kube"
# Pinned versions: KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION.
# shellcheck source=/dev/null
source "$ROOT/scripts/versions.env"
NAME=agentforge
STATE="$ROOT/.cluster"            # git-ignored; everything the cluster writes stays here
KUBECONFIG_OUT="$STATE/kubeconfig"
K8S_BIN="$ROOT/.tools/kubernetes-$KUBERNETES_VERSION/bin"
ETCD_BIN="$ROOT/.tools/etcd-$ETCD_VERSION/etcd"
KWOK_DIR="$ROOT/.tools/kwok-$KWOK_VERSION"
PV_COUNT=${AGENTFORGE_PV_COUNT:-96}

# kwokctl reads KWOK_* variables over its config file (e.g. KWOK_VERSION from a
# sourced versions.env, KWOK_RUNTIME): drop them all so only the file below decides,
# and keep kwokctl's workdir (clusters, cache, pki, logs, etcd data) inside .cluster/.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^KWOK_' || true)
export KWOK_WORKDIR="$STATE/kwok"

# kubectl (ours, and the one kwokctl runs for health checks) caches in ~/.kube/cache
# unless told otherwise.
export KUBECACHEDIR="$STATE/kube-cache"
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_OUT" "$@"; }
kwokctl() { "$KWOK_DIR/kwokctl" --name "$NAME" "$@"; }

healthy() {
  [[ -f $KUBECONFIG_OUT ]] && kubectl get --raw /readyz >/dev/null 2>&1
}

# Delete the cluster: kwokctl stops its processes (it tracks their pids in its
# workdir); then remove every file it left.
down() {
  if [[ -x $KWOK_DIR/kwokctl && -d $KWOK_WORKDIR/clusters/$NAME ]]; then
    kwokctl delete cluster --kubeconfig "$KUBECONFIG_OUT" >/dev/null 2>&1 || true
  fi
  # Fallback if kwokctl is missing or failed: stop the processes it recorded, each
  # only if its pid still runs one of this cluster's binaries.
  local f pid
  for f in "$KWOK_WORKDIR/clusters/$NAME"/pids/*.pid; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    if [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == "$KWOK_WORKDIR/clusters/$NAME/bin/"* ]]; then
      kill "$pid"
    fi
  done
  rm -rf "$STATE"
}

# The kwokctl configuration: local binaries only (with any binary missing kwokctl
# would try to download it, which fails offline), every port on 127.0.0.1, RBAC and
# the default admission plugins (PodSecurity, DefaultStorageClass...) switched on.
write_config() {
  cat <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeVersion: $KUBERNETES_VERSION
  kwokVersion: $KWOK_VERSION
  etcdVersion: ${ETCD_VERSION#v}
  bindAddress: 127.0.0.1
  securePort: true
  kubeAuthorization: true
  kubeAdmission: true
  kubeApiserverBinary: $K8S_BIN/kube-apiserver
  kubeControllerManagerBinary: $K8S_BIN/kube-controller-manager
  kubeSchedulerBinary: $K8S_BIN/kube-scheduler
  kubectlBinary: $K8S_BIN/kubectl
  etcdBinary: $ETCD_BIN
  kwokControllerBinary: $KWOK_DIR/kwok
  cacheDir: $STATE/kwok/cache
  components: [etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok-controller]
YAML
  local f
  for f in "$KWOK_DIR"/stages/*.yaml "$HERE/stages.yaml"; do
    printf -- '---\n'
    cat "$f"
  done
}

# What the tests need besides the control plane: 3 schedulable nodes (one per zone,
# for spread constraints), a default StorageClass and pre-made PersistentVolumes
# that the real PV controller binds to claims (nothing provisions volumes here).
write_objects() {
  local i zones=(a b c)
  for i in 0 1 2; do
    cat <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake}
  labels:
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    topology.kubernetes.io/zone: zone-${zones[$i]}
YAML
  done
  cat <<YAML
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
reclaimPolicy: Retain
YAML
  for ((i = 0; i < PV_COUNT; i++)); do
    cat <<YAML
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-$(printf %02d "$i")
  labels: {agentforge.kwok/pool: standard}
spec:
  storageClassName: standard
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany, ReadWriteMany]
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /nonexistent/agentforge-pv-$i}   # never mounted: no kubelet runs
YAML
  done
}

# Released volumes (their claim was deleted) are never bound again under Retain;
# clearing claimRef makes them Available, so repeated install/uninstall cycles do
# not run out of volumes.
recycle_pvs() {
  local pv
  for pv in $(kubectl get pv -l agentforge.kwok/pool=standard \
    -o jsonpath='{range .items[?(@.status.phase=="Released")]}{.metadata.name}{" "}{end}'); do
    kubectl patch pv "$pv" --type json -p '[{"op":"remove","path":"/spec/claimRef"}]' >/dev/null
  done
}

up() {
  local t0=$SECONDS
  "$HERE/build.sh" # no-op when the pinned binaries are already built
  if healthy; then
    echo "cluster $NAME already up, reusing it"
  else
    down # stale state (e.g. after a reboot) is not worth repairing
    mkdir -p "$STATE"
    write_config >"$STATE/kwokctl.yaml"
    kwokctl --config "$STATE/kwokctl.yaml" create cluster \
      --kubeconfig "$KUBECONFIG_OUT" --wait 120s
  fi
  # Server-side apply: every pytest worker that reuses the cluster applies these objects again, and client-side
  # apply would cost each of them far more CPU (docs/benchmarks.md).
  write_objects | kubectl apply --server-side --force-conflicts --field-manager cluster.sh -f - >/dev/null
  recycle_pvs
  kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null
  echo "cluster $NAME ready in $((SECONDS - t0))s; API server $(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  echo "export KUBECONFIG=$KUBECONFIG_OUT"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) healthy ;;
  kubeconfig) echo "$KUBECONFIG_OUT" ;;
  *) echo "usage: $0 up|down|status|kubeconfig" >&2; exit 2 ;;
esac
