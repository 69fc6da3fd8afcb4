"""The chart's components, as its one registry lists them (charts/agentforge/files/components.yaml, which the
templates read too): the tests' component tables derive from it. tests/render/test_components.py holds the registry
to what AgentForge runs: its seven components, and the ports the application's own Dockerfiles expose."""

from __future__ import annotations

from harness.render import CHART, load_yaml

REGISTRY: list[dict] = load_yaml((CHART / "files" / "components.yaml").read_text())["components"]
BY_KEY = {c["key"]: c for c in REGISTRY}
BY_NAME = {c["name"]: c for c in REGISTRY}

# values key: (workload kind, component: its label, the suffix of its objects' names and its main container's name)
WORKLOADS = {c["key"]: (c["kind"], c["name"]) for c in REGISTRY}
# component name: its main container's port number
PORTS = {c["name"]: c["port"]["number"] for c in REGISTRY}
# the data stores with a metrics exporter: component name: the exporter's port
EXPORTER_PORTS = {c["name"]: c["exporter"]["port"] for c in REGISTRY if c["exporter"]}
# the components that run uvicorn (`<key>.server`): their names
SERVERS = [c["name"] for c in REGISTRY if c["server"]]
# the components with a HorizontalPodAutoscaler and a PodDisruptionBudget: their names
AUTOSCALED = [c["name"] for c in REGISTRY if c["autoscaled"]]
