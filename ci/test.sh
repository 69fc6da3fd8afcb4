#!/usr/bin/env bash
# The test step of the pipeline, callable by any CI system (`make test` runs it after `make tools`):
# static checks, then every pytest tier in one run. The end-to-end tier runs against the local kwok cluster,
# which this script starts and stops when KUBECONFIG is unset; another KUBECONFIG is refused by the tests unless
# AGENTFORGE_E2E_ANY_CLUSTER=1.
# Extra arguments go to pytest (e.g. `-m "not e2e"`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"

echo "== lint"
bash ci/lint.sh

if [[ -z ${KUBECONFIG:-} ]]; then
  if ! bash scripts/kube/cluster.sh status; then
    start=$(date +%s)
    log=$(mktemp)
    bash scripts/kube/cluster.sh up >"$log" 2>&1 || { cat "$log"; exit 1; }
    echo "== local cluster started in $(( $(date +%s) - start )) s"
    trap 'bash scripts/kube/cluster.sh down' EXIT
  fi
  KUBECONFIG="$(bash scripts/kube/cluster.sh kubeconfig)"
  export KUBECONFIG
fi

echo "== tests"
# One pytest run for every tier; --dist loadfile keeps each file on one worker (e2e modules share a
# release). pytest exits 5 when it collects no test: that fails this script like any other error.
.venv/bin/python -m pytest -n 2 --dist loadfile -p no:cacheprovider --durations=15 "$@"
