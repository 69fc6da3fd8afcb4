"""The environment a rendered container receives, resolved as the kubelet resolves it: env and envFrom, with
ConfigMap and Secret references read from the rendered objects (or objects declared to exist outside the chart), and
$(VAR) references expanded."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from harness.render import Manifests


class PodError(AssertionError):
    """The pod could not be run as rendered: the message names the container and what was missing."""


@dataclass
class ObjectStore:
    """ConfigMaps and Secrets a pod may reference: the rendered ones plus those the test declares as existing."""

    objects: Manifests
    existing_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    existing_config_maps: dict[str, dict[str, str]] = field(default_factory=dict)

    def data(self, kind: str, name: str) -> dict[str, str] | None:
        obj = self.objects.find(kind, name)
        if obj is not None:
            if kind == "Secret":
                decoded = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
                return decoded | (obj.get("stringData") or {})
            return dict(obj.get("data") or {})
        existing = self.existing_secrets if kind == "Secret" else self.existing_config_maps
        return existing.get(name)


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command, args and env values ($$ escapes; unknown references stay)."""
    return _VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def resolve_env(store: ObjectStore, workload: dict, container: dict) -> dict[str, str]:
    """The environment the kubelet gives the container: envFrom first, then env, references resolved."""
    where = f"{workload['kind']}/{workload['metadata']['name']} container {container['name']}"
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
        data = store.data(kind, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise PodError(f"{where}: envFrom {kind} {ref['name']!r} is neither rendered nor declared as existing")
        for key, value in data.items():
            env[source.get("prefix", "") + key] = value
    for var in container.get("env", []):
        source = var.get("valueFrom")
        if source is None:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        kind, ref = (("Secret", source["secretKeyRef"]) if "secretKeyRef" in source
                     else ("ConfigMap", source["configMapKeyRef"]) if "configMapKeyRef" in source else (None, None))
        if kind is None:
            raise PodError(f"{where}: env {var['name']} uses {sorted(source)}, which this harness cannot resolve")
        data = store.data(kind, ref["name"])
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                continue
            raise PodError(f"{where}: env {var['name']} needs key {ref['key']!r} of {kind} {ref['name']!r}, "
                           "which is neither rendered nor declared as existing")
        env[var["name"]] = data[ref["key"]]
    return env
