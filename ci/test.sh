#!/usr/bin/env bash
# The test step of the pipeline, callable by any CI system (`make test` runs it after `make tools`):
# static checks, then the pytest tiers in two runs: every tier but the real-pod one on two workers, then the real-pod
# tier (marker `real`) in one process. The end-to-end tier runs against the local kwok cluster, which this script
# starts and stops when KUBECONFIG is unset; another KUBECONFIG is refused by the tests unless
# AGENTFORGE_E2E_ANY_CLUSTER=1. The real-pod tier starts the local node (scripts/kube/node.sh) itself; this script
# stops it at the end unless it was running before.
# Extra arguments go to one pytest run instead (e.g. `-m "not e2e"`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"

echo "== lint"
bash ci/lint.sh

# What this script started, stopped when it exits (or once it has served).
stop=()
stop_started() {
  local command
  for command in "${stop[@]}"; do $command >/dev/null 2>&1 || true; done
  stop=()
}
trap stop_started EXIT

if [[ -z ${KUBECONFIG:-} ]]; then
  if ! bash scripts/kube/cluster.sh status; then
    start=$(date +%s)
    log=$(mktemp)
    bash scripts/kube/cluster.sh up >"$log" 2>&1 || { cat "$log"; exit 1; }
    echo "== local cluster started in $(( $(date +%s) - start )) s"
    stop+=("bash scripts/kube/cluster.sh down")
  fi
  KUBECONFIG="$(bash scripts/kube/cluster.sh kubeconfig)"
  export KUBECONFIG
fi

# pytest exits 5 when it collects no test: that fails this script like any other error. --dist loadfile keeps each
# file on one worker (e2e modules share a release).
pytest=(.venv/bin/python -m pytest -p no:cacheprovider --durations=15)
on_workers=(-n 2 --dist loadfile)
if (($#)); then
  echo "== tests ($*)"
  "${pytest[@]}" "${on_workers[@]}" "$@"
  exit
fi

echo "== tests: render, real-server, app-conformance and end-to-end tiers"
failed=0
# Each tier's renders are compared with the helm CLI's on a sample of one distinct input in ten, which rotates every
# day (harness.render.CliCheck; `make test-render-cli` compares every input).
AGENTFORGE_CLI_CHECK=${AGENTFORGE_CLI_CHECK:-10} "${pytest[@]}" "${on_workers[@]}" -m "not real" || failed=$?
# The simulated cluster has served its tier: its processes leave the node's tier the machine's cores.
stop_started

echo "== images (make images: every image the chart runs, built from the application's source and Debian's packages)"
bash scripts/images/build.sh
# The edge tests' controller and frontend, built here rather than beside the running release.
bash scripts/images/build.sh traefik frontend-edge

echo "== tests: the real-pod tier (the chart's pods as real containers on the local node)"
# One process, in the order tests/real/conftest.py gives: it drives one node and one release. The node is stopped,
# and the machine restored, when it ends (its first test proves that `node.sh down` restores it).
bash scripts/kube/node.sh status 2>/dev/null || stop+=("bash scripts/kube/node.sh down")
"${pytest[@]}" -m real -p no:xdist || failed=$?
exit "$failed"
