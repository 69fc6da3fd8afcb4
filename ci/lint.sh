#!/usr/bin/env bash
# The static checks, for `make lint` and ci/test.sh. They check and write nothing: ruff, the staleness check of the
# generated schema and parameter table, `helm lint --strict` with the default values, and chart-testing's
# `ct lint` (ci/ct.yaml): Chart.yaml against ct's schema, yamllint, and `helm lint --strict` with every
# charts/agentforge/ci/*-values.yaml.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PWD/.venv/bin:$PATH"  # ct runs helm, yamllint and yamale from PATH

ruff check scripts tests ci
python scripts/gen_docs.py --check
helm lint --strict charts/agentforge
# ct prints a page per values file: shown when it fails.
if ! out=$(ct lint --config ci/ct.yaml --lint-conf .tools/ct-etc/lintconf.yaml \
  --chart-yaml-schema .tools/ct-etc/chart_schema.yaml 2>&1); then
  printf '%s\n' "$out" >&2
  exit 1
fi
echo "ct lint: $(grep -c '^Linting chart with values file' <<<"$out") values files, all charts linted successfully"
