#!/usr/bin/env bash
# `make demo`: start the local Kubernetes API server (kwok) and install the chart on it, then show
# the release. Run twice, it upgrades the same release in place. `make demo-down` removes it all.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RELEASE=${RELEASE:-agentforge}
NAMESPACE=${NAMESPACE:-agentforge}
HELM="$ROOT/.tools/bin/helm"
KUBECTL="$ROOT/.tools/bin/kubectl"

bash "$ROOT/scripts/kube/cluster.sh" up >/dev/null
KUBECONFIG="$(bash "$ROOT/scripts/kube/cluster.sh" kubeconfig)"
export KUBECONFIG

# The namespace enforces the Pod Security Standard "restricted", which every pod of the chart meets.
"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client --output yaml | "$KUBECTL" apply -f - >/dev/null
"$KUBECTL" label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null

start=$(date +%s)
if "$HELM" status "$RELEASE" --namespace "$NAMESPACE" >/dev/null 2>&1; then
  "$HELM" upgrade "$RELEASE" "$ROOT/charts/agentforge" --namespace "$NAMESPACE" --wait --timeout 5m >/dev/null
else
  "$HELM" install "$RELEASE" "$ROOT/charts/agentforge" --namespace "$NAMESPACE" --wait --timeout 5m >/dev/null
fi
echo "== helm install/upgrade --wait took $(( $(date +%s) - start )) s"

echo "== release"
"$HELM" status "$RELEASE" --namespace "$NAMESPACE" | sed '/^NOTES:/,$d'
echo "== notes"
"$HELM" get notes "$RELEASE" --namespace "$NAMESPACE"
echo "== pods (simulated by kwok: no containers run)"
"$KUBECTL" get pods --namespace "$NAMESPACE" --output wide
echo
echo "export KUBECONFIG=$KUBECONFIG   # to use kubectl/helm against it; 'make demo-down' removes it"
