"""Reference integrity: every Secret, ConfigMap and claim a pod names exists with the keys it reads, in every scenario.

A pod whose secretKeyRef names a key its Secret lacks never starts (CreateContainerConfigError), and kubeconform
cannot see it: the reference is valid YAML. Each reference of every container and init container of every workload
(Deployment, StatefulSet, Job, Pod, hooks included) must resolve to a key of an object the render holds, or to an
object outside the render that the values declare (`secrets.existingSecret`, `secrets.llmApiKeysSecret`,
`grafana.admin.existingSecret`, an existing claim, the objects named in `extraEnv`/`extraEnvFrom`/`extraVolumes` and
in sidecars). A name written as a template (`{{ ... }}`, rendered with tpl) declares nothing: it must resolve to an
object of the render. A reference marked `optional: true` may miss only a key the values declare optional.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest

from harness.objects import component_name, pod_spec
from harness.policy import WORKLOAD_KINDS
from harness.render import CHART, Manifests, load_yaml, render_chart
from harness.values import SCENARIOS, deep_merge

VALUES = load_yaml((CHART / "values.yaml").read_text())
# Components whose pods take extraEnv/extraVolumes from values (the migration Job takes the backend's).
EXTENSIBLE = ("backend", "frontend", "dataCollector", "postgresql", "redis", "prometheus", "grafana")
# The keys a Secret named by secrets.existingSecret holds: every key the chart would generate (values.yaml).
EXISTING_APP_SECRET_KEYS = {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD", "DATABASE_URL",
                            "REDIS_URL"}
# The app Secret from an external store (externalSecrets.enabled, test_external_secrets.py), in each topology of
# the servers: `data` maps the keys the chart requires there, and nothing else.
EXTERNAL_SERVERS = {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.example.net"},
                    "redis": {"enabled": False}, "externalRedis": {"host": "cache.example.net"}}
EXTERNAL_SECRETS_TOPOLOGIES = {
    "bundled-servers": ({}, EXISTING_APP_SECRET_KEYS | {"REDIS_PASSWORD"}),
    "external-servers": (EXTERNAL_SERVERS, EXISTING_APP_SECRET_KEYS - {"POSTGRES_PASSWORD"}),
}


def external_secrets_values(topology: str) -> dict:
    base, keys = EXTERNAL_SECRETS_TOPOLOGIES[topology]
    data = [{"secretKey": key, "remoteRef": {"key": "agentforge", "property": key}} for key in sorted(keys)]
    return base | {"externalSecrets": {"enabled": True, "secretStoreRef": {"name": "vault"}, "data": data}}


@dataclass
class Outside:
    """An object outside the render that the values declare: the keys it must hold, and those it may leave out."""

    keys: set[str] = field(default_factory=set)
    optional: set[str] = field(default_factory=set)
    any_key: bool = False  # loaded whole (envFrom), or its keys are the user's business


def user_refs(node, declared: dict[tuple[str, str], Outside]) -> None:
    """Declare the Secrets and ConfigMaps an extraEnv or extraVolumes entry of the values names (with its keys)."""
    if isinstance(node, list):
        for item in node:
            user_refs(item, declared)
        return
    if not isinstance(node, dict):
        return
    for ref, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
        if ref in node and "{{" not in node[ref]["name"]:
            declared.setdefault((kind, node[ref]["name"]), Outside()).keys.add(node[ref]["key"])
    for ref, kind, name_field in (("configMap", "ConfigMap", "name"), ("secret", "Secret", "secretName"),
                                  ("configMapRef", "ConfigMap", "name"), ("secretRef", "Secret", "name")):
        if isinstance(node.get(ref), dict) and name_field in node[ref] and "{{" not in node[ref][name_field]:
            outside = declared.setdefault((kind, node[ref][name_field]), Outside())
            items = node[ref].get("items")
            if items:
                outside.keys |= {item["key"] for item in items}
            else:
                outside.any_key = True
    if isinstance(node.get("persistentVolumeClaim"), dict):
        declared.setdefault(("PersistentVolumeClaim", node["persistentVolumeClaim"]["claimName"]), Outside())
    for value in node.values():
        user_refs(value, declared)


def declared_outside(values: dict) -> dict[tuple[str, str], Outside]:
    """Every object outside the render that the (merged) values name, with the keys the chart reads from it."""
    v = deep_merge(copy.deepcopy(VALUES), values)
    declared: dict[tuple[str, str], Outside] = {}
    if v["secrets"]["existingSecret"]:
        # REDIS_PASSWORD may be left out "for a Redis without one": an external Redis. The bundled one has one.
        redis_password = {"REDIS_PASSWORD"}
        declared[("Secret", v["secrets"]["existingSecret"])] = Outside(
            keys=EXISTING_APP_SECRET_KEYS | (redis_password if v["redis"]["enabled"] else set()),
            optional=set() if v["redis"]["enabled"] else redis_password)
    external_secrets = v.get("externalSecrets", {})
    if external_secrets.get("enabled"):
        # The Secret the External Secrets Operator writes: the keys `data` maps (any with `dataFrom`, whose fields
        # only the operator sees); an external Redis' REDIS_PASSWORD may be absent, as with secrets.existingSecret.
        declared[("Secret", component_name("external-secrets"))] = Outside(
            keys={item["secretKey"] for item in external_secrets["data"]}, any_key=bool(external_secrets["dataFrom"]),
            optional=set() if v["redis"]["enabled"] else {"REDIS_PASSWORD"})
    if v["secrets"]["llmApiKeysSecret"]:
        declared[("Secret", v["secrets"]["llmApiKeysSecret"])] = Outside(any_key=True)
    admin = v["grafana"]["admin"]
    if admin["existingSecret"]:
        declared[("Secret", admin["existingSecret"])] = Outside(keys={admin["userKey"], admin["passwordKey"]},
                                                                optional={"secret-key"})
    for external, ca in (("externalDatabase", v["externalDatabase"]["sslRootCert"]),
                         ("externalRedis", v["externalRedis"]["tls"]["caCert"])):
        if v[external]["existingSecret"]:
            # The pods read a whole URL from it (existingSecretUrlKey), else the chart reads the password (lookup).
            declared[("Secret", v[external]["existingSecret"])] = Outside(
                keys={v[external]["existingSecretUrlKey"] or v[external]["existingSecretPasswordKey"]})
        for kind, field_name in (("Secret", "secret"), ("ConfigMap", "configMap")):
            if ca[field_name]:
                declared.setdefault((kind, ca[field_name]), Outside()).keys.add(ca["key"])
    for component in ("prometheus", "grafana"):
        if v[component]["persistence"]["existingClaim"]:
            declared[("PersistentVolumeClaim", v[component]["persistence"]["existingClaim"])] = Outside()
    for component in EXTENSIBLE:
        user_refs([v[component].get(key, []) for key in ("extraEnv", "extraEnvFrom", "extraVolumes", "extraContainers",
                                                         "extraInitContainers")], declared)
    user_refs(v["migrations"].get("extraInitContainers", []), declared)
    return declared


def object_keys(obj: dict) -> set[str]:
    return set(obj.get("data") or {}) | set(obj.get("stringData") or {}) | set(obj.get("binaryData") or {})


class References:
    """Walks the references of every workload of one render; `broken` collects what does not resolve."""

    def __init__(self, objects: Manifests, declared: dict[tuple[str, str], Outside]):
        self.objects, self.declared = objects, declared
        self.broken: list[str] = []
        self.checked = 0

    def key(self, where: str, kind: str, name: str, key: str, optional: bool) -> None:
        self.checked += 1
        ref = f"{kind} {name!r} key {key!r}{' (optional)' if optional else ''}"
        obj = self.objects.find(kind, name)
        if obj is not None:
            if key not in object_keys(obj):
                self.broken.append(f"{where}: {ref}: the rendered {kind} has only {sorted(object_keys(obj))}")
            return
        outside = self.declared.get((kind, name))
        if outside is None:
            self.broken.append(f"{where}: {ref}: no such {kind} in the render, and the values declare none")
        elif not (outside.any_key or key in outside.keys or (optional and key in outside.optional)):
            why = "which the values declare optional: the reference must be optional" if key in outside.optional \
                else f"which the values do not declare (declared: {sorted(outside.keys)})"
            self.broken.append(f"{where}: {ref}: the existing {kind} may lack it, {why}")

    def whole(self, where: str, kind: str, name: str, optional: bool) -> None:
        self.checked += 1
        if self.objects.find(kind, name) is None and (kind, name) not in self.declared:
            self.broken.append(f"{where}: {kind} {name!r}{' (optional)' if optional else ''}: no such {kind} in the "
                               f"render, and the values declare none")

    def volume(self, where: str, volume: dict) -> None:
        where = f"{where} volume {volume['name']!r}"
        sources = [volume] + [s for s in volume.get("projected", {}).get("sources", [])]
        for source in sources:
            for field_name, kind, name_field in (("configMap", "ConfigMap", "name"), ("secret", "Secret", "secretName"),
                                                 ("secret", "Secret", "name")):
                ref = source.get(field_name)
                if not isinstance(ref, dict) or name_field not in ref:
                    continue
                optional = bool(ref.get("optional"))
                if ref.get("items"):
                    for item in ref["items"]:
                        self.key(where, kind, ref[name_field], item["key"], optional)
                else:
                    self.whole(where, kind, ref[name_field], optional)
        if "persistentVolumeClaim" in volume:
            self.whole(where, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], False)

    def workload(self, obj: dict) -> None:
        spec = pod_spec(obj)
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        volumes = {v["name"] for v in spec.get("volumes", [])}
        claim_templates = {t["metadata"]["name"] for t in obj.get("spec", {}).get("volumeClaimTemplates", [])}
        for volume in spec.get("volumes", []):
            self.volume(what, volume)
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{what} container {c['name']!r}"
            for env in c.get("env", []):
                for ref_name, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    ref = env.get("valueFrom", {}).get(ref_name)
                    if ref:
                        self.key(f"{where} env {env['name']}", kind, ref["name"], ref["key"], bool(ref.get("optional")))
            for source in c.get("envFrom", []):
                for ref_name, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if ref_name in source:
                        ref = source[ref_name]
                        self.whole(f"{where} envFrom", kind, ref["name"], bool(ref.get("optional")))
            for mount in c.get("volumeMounts", []):
                self.checked += 1
                if mount["name"] not in volumes | claim_templates:
                    self.broken.append(f"{where} volumeMount {mount['mountPath']}: no volume {mount['name']!r} in the "
                                       f"pod (has {sorted(volumes | claim_templates)})")

    def check(self) -> References:
        for obj in self.objects:
            if obj["kind"] in WORKLOAD_KINDS:
                self.workload(obj)
        return self


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_reference_resolves(scenario):
    values = SCENARIOS[scenario]
    refs = References(render_chart(values), declared_outside(values)).check()
    assert refs.checked >= 20, f"only {refs.checked} references found: the walk misses the pods"
    assert refs.broken == [], f"{scenario}: broken references:\n" + "\n".join(refs.broken)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_declared_outside_object_is_used(scenario):
    """The other way round: an existing object the values name is one the pods read (else the declaration above is
    too wide, or the chart forgot to wire it)."""
    values = SCENARIOS[scenario]
    objects = render_chart(values)
    named = str([o for o in objects if o["kind"] in WORKLOAD_KINDS])
    for kind, name in declared_outside(values):
        assert repr(name) in named, f"{scenario}: {kind} {name!r} is declared by the values but no pod reads it"


@pytest.mark.parametrize("topology", EXTERNAL_SECRETS_TOPOLOGIES)
def test_every_reference_resolves_with_the_secret_from_an_external_store(topology):
    """The pods read only keys the ExternalSecret maps (or, for an external Redis' password, read it as optional), and
    they do read its Secret."""
    values = external_secrets_values(topology)
    objects = render_chart(values)
    refs = References(objects, declared_outside(values)).check()
    assert refs.broken == [], f"{topology}: broken references:\n" + "\n".join(refs.broken)
    assert repr(component_name("external-secrets")) in str([o for o in objects if o["kind"] in WORKLOAD_KINDS])


class TestTheWalkCatches:
    """The checker itself: each kind of broken reference in a render is reported, naming workload, container and
    reference (the templates are right, so the render is damaged here)."""

    @pytest.fixture
    def objects(self):
        return render_chart(SCENARIOS["all-options"])  # a copy of its own: the tests damage it

    def broken(self, objects, values=None):
        return References(objects, declared_outside(values or SCENARIOS["all-options"])).check().broken

    def test_missing_key_of_a_rendered_secret(self, objects):
        del objects.get("Secret", "agentforge-secrets")["data"]["REDIS_URL"]
        (broken,) = self.broken(objects)
        assert broken.startswith("Deployment/agentforge-backend container 'backend' env REDIS_URL: Secret "
                                 "'agentforge-secrets' key 'REDIS_URL'")

    def test_optional_ref_does_not_excuse_a_missing_rendered_key(self, objects):
        del objects.get("Secret", "agentforge-secrets")["data"]["REDIS_PASSWORD"]
        broken = self.broken(objects)
        assert any(b.startswith("Deployment/agentforge-backend container 'wait-for-redis' env REDISCLI_AUTH: Secret "
                                "'agentforge-secrets' key 'REDIS_PASSWORD' (optional)") for b in broken), broken

    def test_missing_item_key_of_a_configmap_volume(self, objects):
        del objects.get("ConfigMap", "agentforge-grafana")["data"]["dashboards.yaml"]
        (broken,) = self.broken(objects)
        assert broken.startswith("Deployment/agentforge-grafana volume 'dashboard-providers': ConfigMap "
                                 "'agentforge-grafana' key 'dashboards.yaml'")

    def test_undeclared_outside_object(self, objects):
        objects.remove(objects.get("ConfigMap", "agentforge-redis"))
        (broken,) = self.broken(objects)
        assert broken.startswith("StatefulSet/agentforge-redis volume 'config': ConfigMap 'agentforge-redis'")

    def test_mount_of_a_missing_volume(self, objects):
        spec = pod_spec(objects.get("Deployment", "agentforge-frontend"))
        mount = spec["containers"][0]["volumeMounts"][0]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != mount["name"]]
        (broken,) = self.broken(objects)
        assert broken.startswith(f"Deployment/agentforge-frontend container 'frontend' volumeMount "
                                 f"{mount['mountPath']}: no volume {mount['name']!r}")

    def test_key_the_external_secret_does_not_map(self):
        values = external_secrets_values("bundled-servers")
        objects = render_chart(values)
        es = objects.of_kind("ExternalSecret")[0]["spec"]
        values["externalSecrets"]["data"] = [d for d in es["data"] if d["secretKey"] != "ENCRYPTION_KEY"]
        (broken,) = self.broken(objects, values)
        assert broken.startswith("Deployment/agentforge-backend container 'backend' env ENCRYPTION_KEY: Secret "
                                 "'agentforge-external-secrets' key 'ENCRYPTION_KEY'")

    def test_required_ref_to_a_key_the_existing_secret_may_lack(self):
        values = {"grafana": {"admin": {"existingSecret": "grafana-admin"}}}
        objects = render_chart(values)
        env = pod_spec(objects.get("Deployment", "agentforge-grafana"))["containers"][0]["env"]
        next(e for e in env if e["name"] == "GF_SECURITY_SECRET_KEY")["valueFrom"]["secretKeyRef"].pop("optional")
        (broken,) = self.broken(objects, values)
        assert broken.startswith("Deployment/agentforge-grafana container 'grafana' env GF_SECURITY_SECRET_KEY: "
                                 "Secret 'grafana-admin' key 'secret-key'") and "must be optional" in broken
