#!/usr/bin/env bash
# The test step of the pipeline: static checks, then every pytest tier. Callable by any CI system;
# `make test` runs it after installing the tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH"

echo "== lint"
.venv/bin/ruff check scripts tests ci
python3 scripts/gen_docs.py --check

echo "== tests"
# pytest exits 5 when it collects no test: that is a failure here, as any other non-zero code.
.venv/bin/python -m pytest -n 2 "$@"
