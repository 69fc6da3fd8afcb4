#!/usr/bin/env bash
# `make demo`: build what the demo needs (helm and the local control plane, nothing else), start the local
# Kubernetes API server (kwok), helm install the chart on it, show the release. Run twice, it upgrades the same
# release in place. `make demo-down` removes it all.
#
# AGENTFORGE_DEMO_CLUSTER=current installs on the cluster of your current KUBECONFIG context instead (kind, or a
# real cluster): no control plane is built (helm and kubectl only), the script prints what it will create first
# (the namespace, its Pod Security label, the release), refuses a namespace it did not create, and records what it
# created in .demo/, so that `make demo-down` removes that and nothing else (not the local cluster either). The images must be pullable there:
# DEMO_VALUES=<file> adds a values file (e.g. your registry and tags; see the chart README's "Images").
#
# Usage: demo.sh [up|down]
set -euo pipefail
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

own_cluster() { [[ ${AGENTFORGE_DEMO_CLUSTER:-} == current ]]; }

up() {
  local kube=() helm_kube=() values=() context=""
  [[ -z ${DEMO_VALUES:-} ]] || values=(--values "$DEMO_VALUES")
  if own_cluster; then
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
  else
    phase "tools: helm and the local control plane (kube-apiserver, etcd, kwok)"
    bash "$ROOT/scripts/install-tools.sh" demo
    phase "starting the local cluster"
    run cluster-up bash "$ROOT/scripts/kube/cluster.sh" up
    KUBECONFIG="$(bash "$ROOT/scripts/kube/cluster.sh" kubeconfig)"
    export KUBECONFIG
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
    --namespace "$NAMESPACE" "${values[@]}" --wait --timeout 5m
  phase "installed"

  echo "== release"
  "$HELM" "${helm_kube[@]}" status "$RELEASE" --namespace "$NAMESPACE" | sed '/^NOTES:/,$d'
  echo "== notes"
  "$HELM" "${helm_kube[@]}" get notes "$RELEASE" --namespace "$NAMESPACE"
  if own_cluster; then
    echo "== pods"
  else
    echo "== pods (simulated by kwok: no containers run)"
  fi
  "$KUBECTL" "${kube[@]}" get pods --namespace "$NAMESPACE" --output wide
  echo
  if own_cluster; then
    echo "'make demo-down' removes release $RELEASE and namespace $NAMESPACE from context $context"
  else
    echo "export KUBECONFIG=$KUBECONFIG   # to use kubectl/helm against it; 'make demo-down' removes it"
  fi
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
    bash "$ROOT/scripts/kube/cluster.sh" down
  fi
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  *) echo "usage: demo.sh [up|down]" >&2; exit 2 ;;
esac
