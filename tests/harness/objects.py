"""Accessors of rendered objects: pod specs, containers, their env and where it comes from, command lines,
volumes, and the components' object names."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.render import Manifests


def pod_spec(obj: dict) -> dict:
    """The pod spec of a workload (Deployment, StatefulSet, Job, CronJob) or Pod."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def container(obj: dict, name: str) -> dict:
    spec = pod_spec(obj)
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise KeyError(f"no container {name} in {obj['kind']}/{obj['metadata']['name']}")


def env_of(c: dict) -> dict[str, dict]:
    """A container's env as {NAME: EnvVar}."""
    return {e["name"]: e for e in c.get("env", [])}


def component_name(component: str, release: str = "agentforge") -> str:
    return f"{release}-{component}" if "agentforge" in release else f"{release}-agentforge-{component}"


SECRET_ENV_NAMES = ("SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "DATABASE_URL",
                "REDIS_URL", "GF_SECURITY_ADMIN_PASSWORD", "REDISCLI_AUTH")


def env_sources(objects: Manifests, workload: dict, container_name: str) -> dict[str, tuple[str, str, str]]:
    """{ENV: (source kind, object name, key)} for every variable the container receives.

    Kinds: "Secret", "ConfigMap" (by key or envFrom) or "literal". envFrom of an object outside the render
    (an existing Secret) maps to its name with key "*": the entry `<prefix>*` is (kind, name, "*"), since which
    variables it brings is unknown. Two such envFrom under one prefix are ambiguous and raise.
    """
    spec = pod_spec(workload)
    c = next(c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == container_name)
    out: dict[str, tuple[str, str, str]] = {}
    for src in c.get("envFrom", []):
        for kind, ref in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            if ref not in src:
                continue
            name = src[ref]["name"]
            prefix = src.get("prefix", "")
            obj = objects.find(kind, name)
            if obj is None:
                assert prefix + "*" not in out, f"{container_name}: two envFrom of objects outside the render: " \
                                                 f"{out[prefix + '*']} and {(kind, name)}"
                out[prefix + "*"] = (kind, name, "*")
                continue
            for key in (obj.get("data") or {}) | (obj.get("stringData") or {}):
                out[prefix + key] = (kind, name, key)
    for e in c.get("env", []):
        ref = e.get("valueFrom", {})
        if "secretKeyRef" in ref:
            out[e["name"]] = ("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
        elif "configMapKeyRef" in ref:
            out[e["name"]] = ("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"])
        else:
            out[e["name"]] = ("literal", "", e.get("value", ""))
    return out


def argv(c: dict) -> list[str]:
    """What a container runs: its command, then its args (as Kubernetes joins them when both are set)."""
    return [*c.get("command", []), *c.get("args", [])]


def flag(command: list[str], name: str) -> str | None:
    """Value of `--name=value` in a command line (None when absent; two occurrences fail)."""
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    assert len(values) <= 1, f"--{name} given {len(values)} times: {command}"
    return values[0] if values else None


def volumes_by_mount(workload: dict, container_name: str) -> dict[str, dict]:
    """{mountPath: the pod volume (or StatefulSet claim template) mounted there} for one container."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    volumes |= {t["metadata"]["name"]: t for t in workload.get("spec", {}).get("volumeClaimTemplates", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container(workload, container_name).get("volumeMounts", [])}
