#!/usr/bin/env bash
# `make demo`: the real app on a real single-node Kubernetes on this machine. It builds what the demo needs (helm, the
# control plane, kubelet, kube-proxy, containerd, kube-router), builds the images from the application's source
# (`make images`), starts the node (scripts/kube/node.sh), loads the images, helm installs the chart with values that
# point at them (scripts/kube/node-values.yaml), waits until every pod is Ready by its own probes, runs `helm test`,
# registers a first user, and prints how to open the app. Run twice, it upgrades the same release in place.
# `make demo-down` removes it all. Where this machine cannot run real containers (not root, not Linux, no overlayfs
# or cgroups...), it says which requirement is missing.
#
# AGENTFORGE_DEMO_CLUSTER=kwok: the simulated cluster instead (scripts/kube/cluster.sh; kwok marks pods Running, no
# container runs), for a quick look at the objects.
#
# AGENTFORGE_DEMO_CLUSTER=current installs on the cluster of your current KUBECONFIG context instead (kind, or a
# real cluster): no control plane is built (helm and kubectl only), the script prints what it will create first
# (the namespace, its Pod Security label, the release), refuses a namespace it did not create, and records what it
# created in .demo/, so that `make demo-down` removes that and nothing else (not the local cluster either). The
# images must be pullable there: DEMO_VALUES=<file> adds a values file (e.g. your registry and tags; see the chart
# README's "Images").
#
# Usage: demo.sh [up|down]
set -euo pipefail
# helm takes its cluster from HELM_KUBECONTEXT, HELM_KUBEAPISERVER, HELM_KUBETOKEN and the other HELM_KUBE* variables
# before the kubeconfig: none may send helm elsewhere than the context this script shows, checks and passes to every
# helm and kubectl call.
unset "${!HELM_KUBE@}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RELEASE=${RELEASE:-agentforge}
NAMESPACE=${NAMESPACE:-agentforge}
HELM="$ROOT/.tools/bin/helm"
KUBECTL="$ROOT/.tools/bin/kubectl"
# What the demo created on a cluster of your own (git-ignored; the tests give a path of their own).
STATE=${AGENTFORGE_DEMO_STATE:-$ROOT/.demo/own-cluster.env}
T0=$(date +%s)

phase() { printf '==> %s (%d s since start)\n' "$*" $(($(date +%s) - T0)) >&2; }

# run LOG COMMAND...: COMMAND's output to .tools/logs/LOG.log, shown in full only when it fails.
run() {
  local log="$ROOT/.tools/logs/$1.log"
  shift
  mkdir -p "$(dirname "$log")"
  if ! "$@" >"$log" 2>&1; then
    printf '!!! failed: %s; its log, %s:\n' "$*" "$log" >&2
    cat "$log" >&2
    return 1
  fi
}

MODE=${AGENTFORGE_DEMO_CLUSTER:-node}
NODE="$ROOT/scripts/kube/node.sh"
IMAGES_OUT="$ROOT/.tools/images/out"
# The first user the demo registers, with its password made once (git-ignored).
FIRST_USER="$ROOT/.demo/first-user.env"

# start_node: the real node, with the images built and loaded; KUBECONFIG exported.
start_node() {
  local missing
  if ! missing=$(bash "$NODE" check 2>&1); then
    printf '!!! this machine cannot run real containers: %s\n' "$missing" >&2
    echo "    AGENTFORGE_DEMO_CLUSTER=kwok make demo runs the simulated cluster instead (no container runs)" >&2
    exit 1
  fi
  phase "tools: helm, the control plane, kubelet, kube-proxy, containerd, kube-router"
  bash "$ROOT/scripts/install-tools.sh" demo
  phase "images: built from the application's source and Debian's packages (make images)"
  bash "$ROOT/scripts/images/build.sh"
  phase "starting the node (real containers)"
  run node-up bash "$NODE" up
  run node-load bash "$NODE" load "$IMAGES_OUT"/*.tar
  KUBECONFIG="$(bash "$NODE" kubeconfig)"
  export KUBECONFIG
}

# The API from this machine: the backend Service's ClusterIP (kube-proxy routes it to a pod).
backend_url() {
  printf 'http://%s:8000' "$("$KUBECTL" "${kube[@]}" get service "$RELEASE-backend" --namespace "$NAMESPACE" \
    -o jsonpath='{.spec.clusterIP}')"
}

# Register the first user once (its password made once and kept in .demo/).
first_user() {
  mkdir -p "$(dirname "$FIRST_USER")"
  if [[ ! -f $FIRST_USER ]]; then
    printf 'DEMO_EMAIL=demo@agentforge.example.com\nDEMO_PASSWORD=%s\n' \
      "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')Aa1" >"$FIRST_USER"
  fi
  # shellcheck source=/dev/null
  source "$FIRST_USER"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "{\"email\":\"$DEMO_EMAIL\",\"password\":\"$DEMO_PASSWORD\",\"display_name\":\"Demo\"}" \
    "$(backend_url)/api/v1/auth/register")
  case $code in
    201 | 400 | 409) ;; # created, or there from an earlier run (the backend answers 400 for a known email)
    *) echo "!!! registering the first user answered HTTP $code" >&2; return 1 ;;
  esac
}

# own_cluster_prepare: context and refusals for AGENTFORGE_DEMO_CLUSTER=current; sets kube, helm_kube, context.
own_cluster_prepare() {
  phase "tools: helm and kubectl (no control plane: AGENTFORGE_DEMO_CLUSTER=current)"
  bash "$ROOT/scripts/install-tools.sh" demo-kubectl
  local kubeconfig=${KUBECONFIG:-$HOME/.kube/config}
  context=$("$KUBECTL" config current-context)
  kube=(--context "$context") helm_kube=(--kube-context "$context")
  if [[ -f $STATE ]]; then
    # shellcheck source=/dev/null
    source "$STATE"
    [[ $DEMO_CONTEXT == "$context" && $DEMO_NAMESPACE == "$NAMESPACE" ]] || {
      echo "a demo is already installed in namespace $DEMO_NAMESPACE of context $DEMO_CONTEXT: 'make demo-down' first" >&2
      exit 1
    }
  elif "$KUBECTL" "${kube[@]}" get namespace "$NAMESPACE" >/dev/null 2>&1; then
    echo "namespace $NAMESPACE already exists in context $context and the demo did not create it: it is left" \
      "alone; choose another with NAMESPACE=<name>" >&2
    exit 1
  fi
  cat >&2 <<EOF
==> on your cluster: context $context ($kubeconfig), server $("$KUBECTL" "${kube[@]}" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
    it creates: namespace $NAMESPACE, labelled pod-security.kubernetes.io/enforce=restricted
                helm release $RELEASE in it (chart charts/agentforge${DEMO_VALUES:+, values $DEMO_VALUES})
    'make demo-down' removes the release and that namespace, and nothing else
EOF
  mkdir -p "$(dirname "$STATE")"
  printf 'DEMO_CONTEXT=%q\nDEMO_KUBECONFIG=%q\nDEMO_NAMESPACE=%q\nDEMO_RELEASE=%q\n' \
    "$context" "$kubeconfig" "$NAMESPACE" "$RELEASE" >"$STATE"
}

how_to_open() {
  "$KUBECTL" "${kube[@]}" get pods --namespace "$NAMESPACE" \
    -o jsonpath='{range .items[*]}{range .status.containerStatuses[*]}{.containerID}{"\n"}{end}{end}' |
    awk -F:// 'NF == 2 {n[$1]++} END {for (r in n) printf "== %d containers, run by %s\n", n[r], r}'
  echo "== helm test passed: the backend answers through its Service, the frontend's bundle calls http://localhost:8000"
  cat <<EOF

Open the app: forward the frontend and the API to this machine's loopback (the origins the frontend image was built
for), then browse http://localhost:3000 and log in as $DEMO_EMAIL with password $DEMO_PASSWORD

  export KUBECONFIG=$KUBECONFIG
  $KUBECTL --namespace $NAMESPACE port-forward service/$RELEASE-frontend 3000:3000 &
  $KUBECTL --namespace $NAMESPACE port-forward service/$RELEASE-backend 8000:8000 &

'make demo-down' stops the node and restores this machine.
EOF
}

up() {
  local kube=() helm_kube=() values=() context=""
  [[ -z ${DEMO_VALUES:-} ]] || values=(--values "$DEMO_VALUES")
  case $MODE in
    current) own_cluster_prepare ;;
    kwok)
      phase "tools: helm and the local control plane (kube-apiserver, etcd, kwok)"
      bash "$ROOT/scripts/install-tools.sh" demo-kwok
      phase "starting the simulated cluster"
      run cluster-up bash "$ROOT/scripts/kube/cluster.sh" up
      KUBECONFIG="$(bash "$ROOT/scripts/kube/cluster.sh" kubeconfig)"
      export KUBECONFIG
      ;;
    node)
      start_node
      values=(--values "$IMAGES_OUT/values.yaml" --values "$ROOT/scripts/kube/node-values.yaml" "${values[@]}")
      ;;
    *) echo "AGENTFORGE_DEMO_CLUSTER=$MODE: unknown (node, the default; kwok; current)" >&2; exit 2 ;;
  esac
  if [[ $MODE != current ]]; then  # the cluster this script started, by its own kubeconfig and context
    context=$("$KUBECTL" --kubeconfig "$KUBECONFIG" config current-context)
    kube=(--kubeconfig "$KUBECONFIG" --context "$context")
    helm_kube=(--kubeconfig "$KUBECONFIG" --kube-context "$context")
  fi

  # The namespace enforces the Pod Security Standard "restricted", which every pod of the chart meets.
  "$KUBECTL" "${kube[@]}" create namespace "$NAMESPACE" --dry-run=client --output yaml |
    "$KUBECTL" "${kube[@]}" apply -f - >/dev/null
  "$KUBECTL" "${kube[@]}" label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null

  local action=install
  "$HELM" "${helm_kube[@]}" status "$RELEASE" --namespace "$NAMESPACE" >/dev/null 2>&1 &&
    action=upgrade
  phase "helm $action $RELEASE --wait"
  run helm-"$action" "$HELM" "${helm_kube[@]}" "$action" "$RELEASE" "$ROOT/charts/agentforge" \
    --namespace "$NAMESPACE" "${values[@]}" --wait --timeout 10m
  phase "installed"
  if [[ $MODE == node ]]; then
    phase "helm test $RELEASE"
    run helm-test "$HELM" "${helm_kube[@]}" test "$RELEASE" --namespace "$NAMESPACE" --logs
    phase "registering the first user"
    first_user
  fi

  echo "== release"
  "$HELM" "${helm_kube[@]}" status "$RELEASE" --namespace "$NAMESPACE" | sed '/^NOTES:/,$d'
  echo "== notes"
  "$HELM" "${helm_kube[@]}" get notes "$RELEASE" --namespace "$NAMESPACE"
  case $MODE in
    kwok) echo "== pods (simulated by kwok: no containers run)" ;;
    node) echo "== pods (real containers)" ;;
    *) echo "== pods" ;;
  esac
  "$KUBECTL" "${kube[@]}" get pods --namespace "$NAMESPACE" --output wide
  echo
  case $MODE in
    current) echo "'make demo-down' removes release $RELEASE and namespace $NAMESPACE from context $context" ;;
    kwok) echo "export KUBECONFIG=$KUBECONFIG   # to use kubectl/helm against it; 'make demo-down' removes it" ;;
    node) how_to_open ;;
  esac
}

down() {
  if [[ -f $STATE ]]; then
    # shellcheck source=/dev/null
    source "$STATE"
    echo "==> removing release $DEMO_RELEASE and namespace $DEMO_NAMESPACE from context $DEMO_CONTEXT (created by make demo)" >&2
    KUBECONFIG=$DEMO_KUBECONFIG "$HELM" --kube-context "$DEMO_CONTEXT" uninstall "$DEMO_RELEASE" \
      --namespace "$DEMO_NAMESPACE" --wait >/dev/null 2>&1 || true
    KUBECONFIG=$DEMO_KUBECONFIG "$KUBECTL" --context "$DEMO_CONTEXT" delete namespace "$DEMO_NAMESPACE" \
      --ignore-not-found --wait=true >/dev/null
    rm -f "$STATE"
  else
    [[ ! -d $ROOT/.node/pids ]] || bash "$NODE" down
    bash "$ROOT/scripts/kube/cluster.sh" down
    rm -f "$FIRST_USER"
  fi
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  *) echo "usage: demo.sh [up|down]" >&2; exit 2 ;;
esac
