# The commands a person types. Tools are installed, pinned, into .tools/ and .venv/ (git-ignored).
SHELL := /bin/bash
# Go where this machine image installs it, for shells whose PATH lacks it (CI runs with a bare environment).
export PATH := $(PATH):/usr/local/go/bin
.DEFAULT_GOAL := help
PY := .venv/bin/python
CHART := charts/agentforge

.PHONY: help tools images test test-render test-render-cli test-app test-e2e test-real bench-load lint docs docs-check demo demo-down bench mutate package publish clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

tools: ## Install the pinned toolchain (scripts/install-tools.sh): helm v4 and v3, promtool, registry, checkov, Python deps, render servers, test servers, the local control plane, the app's virtualenvs and frontend build; logs in .tools/logs/
	bash scripts/install-tools.sh all

images: ## Build every image the chart runs into .tools/images/out/ (OCI archives, refs, values.yaml): pause, CoreDNS, PostgreSQL, Redis, their exporters, Prometheus, backend, data-collector, frontend (NAMES="a b" for some; NEXT_PUBLIC_API_URL/NEXT_PUBLIC_WS_URL for the frontend)
	NEXT_PUBLIC_API_URL="$(NEXT_PUBLIC_API_URL)" NEXT_PUBLIC_WS_URL="$(NEXT_PUBLIC_WS_URL)" bash scripts/images/build.sh $(NAMES)

demo: ## The real app on a single-node Kubernetes started here: tools, images, node, helm install, helm test, how to open it (AGENTFORGE_DEMO_CLUSTER=kwok: the simulated cluster; =current: your kubectl context)
	bash scripts/demo.sh up

demo-down: ## Remove what make demo created: the node (restoring the machine) and the simulated cluster, or the release and namespace it made on your own cluster
	bash scripts/demo.sh down

test: tools ## Run every test: lint, generated-docs check, render, real-server, app-conformance and cluster tests
	bash ci/test.sh

test-render: ## Run the render tier (tests/render: no servers, no cluster), installing only what it needs
	bash scripts/install-tools.sh render
	$(PY) -m pytest tests/render -n 2 --dist worksteal

test-render-cli: ## The render tier with every input also rendered by the helm CLI, which must agree (AGENTFORGE_CLI_CHECK=all)
	bash scripts/install-tools.sh render
	AGENTFORGE_CLI_CHECK=all $(PY) -m pytest tests/render -n 2 --dist worksteal

test-app: tools ## Run AgentForge's own code (AGENTFORGE_SRC, default ../shared/agentforge-src) in the rendered pods
	$(PY) -m pytest tests/app -n 2 --dist loadfile -p no:cacheprovider

test-e2e: tools ## Run the end-to-end tests on the local cluster (another KUBECONFIG only with AGENTFORGE_E2E_ANY_CLUSTER=1)
	bash ci/test.sh -m e2e

test-real: tools ## Run the real-pod tier: the chart's pods as real containers on the local node (root; builds the images)
	$(PY) -m pytest tests/real -p no:cacheprovider -p no:xdist

bench-load: tools ## Bounded load on the backend on the local node (20 req/s for 60 s, 5 WebSockets): latency, errors, footprint
	$(PY) scripts/bench_load.py

lint: tools ## The static checks (ci/lint.sh): ruff, the generated-docs check, helm lint --strict, chart-testing's ct lint
	bash ci/lint.sh

docs: ## Regenerate values.schema.json and the README parameter table from values.yaml comments
	$(PY) scripts/gen_docs.py

docs-check: ## Fail when values.schema.json or the parameter table is stale
	$(PY) scripts/gen_docs.py --check

bench: tools ## Print helm template timings beside a scaffold chart, and the render tier's wall time
	$(PY) scripts/bench.py

mutate: tools ## Check the tests catch each broken promise (a snapshot of HEAD): ci/mutants.yaml by the render and server tiers, ci/mutants-app.yaml by the app tier only (root); each kill confirmed on the unmutated chart
	$(PY) scripts/mutate.py

package: tools ## Package the chart into dist/; SIGN_KEY=<gpg key> KEYRING=<secring.gpg> signs it (.prov) and verifies
	bash scripts/package.sh

publish: tools ## Lint, package (signed with SIGN_KEY) and push to REGISTRY=oci://host/path; refuses a published or lower version
	bash ci/release.sh

clean: ## Remove installed tools and caches
	rm -rf .tools .venv .pytest_cache
