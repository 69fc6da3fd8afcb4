"""externalSecrets.enabled: the app Secret from an external store. One External Secrets Operator ExternalSecret,
checked against the operator's own CRD (its Go module, at the version scripts/versions.env pins), writes the Secret
that every pod reads in place of the one the chart would generate, as they read secrets.existingSecret; the chart
refuses a store it cannot name and a mapping that lacks a key the pods read in the current topology."""

import hashlib

import pytest
import yaml

from harness import crdschema
from harness.objects import component_name, env_sources, pod_spec
from harness.policy import WORKLOAD_KINDS
from harness.render import pinned, render_chart, render_error

TARGET = "agentforge-external-secrets"
GENERATED = "agentforge-secrets"  # the app Secret the chart generates otherwise
GRAFANA = "agentforge-grafana"    # Grafana's admin Secret, not the app's
STORE = {"name": "vault", "kind": "ClusterSecretStore"}
EXTERNAL_DB = {"postgresql": {"enabled": False}, "externalDatabase": {"host": "db.example.net"}}
EXTERNAL_REDIS = {"redis": {"enabled": False}, "externalRedis": {"host": "cache.example.net"}}
# Topology -> (values, the keys some pod reads without `optional`). The bundled servers read their passwords.
TOPOLOGIES = {
    "bundled": ({}, {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD", "DATABASE_URL",
                     "REDIS_PASSWORD", "REDIS_URL"}),
    "external-database": (EXTERNAL_DB, {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "DATABASE_URL",
                                        "REDIS_PASSWORD", "REDIS_URL"}),
    "external-redis": (EXTERNAL_REDIS, {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD",
                                        "DATABASE_URL", "REDIS_URL"}),
    "external-both": (EXTERNAL_DB | EXTERNAL_REDIS, {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "DATABASE_URL",
                                                     "REDIS_URL"}),
    # The backup's pg_dump reads the external database's password from the Secret too.
    "external-database-with-backup": (EXTERNAL_DB | {"backup": {"enabled": True}},
                                      {"SECRET_KEY", "ENCRYPTION_KEY", "POSTGRES_USER", "POSTGRES_PASSWORD",
                                       "DATABASE_URL", "REDIS_PASSWORD", "REDIS_URL"}),
}


def mapping(keys) -> list[dict]:
    """`externalSecrets.data` mapping each key to a property of one remote key."""
    return [{"secretKey": key, "remoteRef": {"key": "agentforge/app", "property": key.lower()}} for key in sorted(keys)]


def values(topology: str = "bundled", **external_secrets) -> dict:
    base, keys = TOPOLOGIES[topology]
    return base | {"externalSecrets": {"enabled": True, "secretStoreRef": STORE, "data": mapping(keys)}
                   | external_secrets}


def secret_refs(objects) -> dict[tuple[str, str], set[tuple[str, str, bool]]]:
    """{(workload, container): {(Secret name, key or "*" for envFrom, optional)}} over every pod of the render."""
    out = {}
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(obj)
        for c in spec.get("initContainers", []) + spec["containers"]:
            refs = set()
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"], bool(ref.get("optional"))))
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    refs.add((source["secretRef"]["name"], "*", bool(source["secretRef"].get("optional"))))
            out[(obj["metadata"]["name"], c["name"])] = refs
    return out


@pytest.fixture(scope="module")
def objects():
    return render_chart(values())


@pytest.fixture(scope="module")
def crd():
    return (crdschema.module_dir("github.com/external-secrets/external-secrets", pinned("EXTERNAL_SECRETS"))
            / "config/crds/bases/external-secrets.io_externalsecrets.yaml")


def test_none_by_default(default_render):
    assert default_render.of_kind("ExternalSecret") == []
    assert default_render.find("Secret", GENERATED) is not None


def test_one_external_secret_into_the_secret_the_pods_read(objects):
    (es,) = objects.of_kind("ExternalSecret")
    assert es["apiVersion"] == "external-secrets.io/v1"
    assert es["metadata"]["name"] == TARGET
    spec = es["spec"]
    assert spec["secretStoreRef"] == STORE
    assert spec["refreshInterval"] == "1h"
    target = spec["target"]
    assert (target["name"], target["creationPolicy"], target["deletionPolicy"]) == (TARGET, "Owner", "Retain")
    # The template sets the type and labels only: the operator then writes the fetched keys as they are.
    assert target["template"]["type"] == "Opaque" and "data" not in target["template"]
    assert spec["data"] == mapping(TOPOLOGIES["bundled"][1])
    assert "dataFrom" not in spec


def test_valid_for_the_operators_crd(objects, crd):
    """The pinned ESO serves the chart's apiVersion (and no longer v1beta1), and its schema, closed, takes the
    ExternalSecret; a misspelt field, a store kind it does not know and a remoteRef without its key fail, so the
    check bites."""
    served = {v["name"]: v["served"] for v in yaml.safe_load(crd.read_text())["spec"]["versions"]}
    assert served == {"v1": True, "v1beta1": False}
    (es,) = objects.of_kind("ExternalSecret")
    assert crdschema.errors(crd, es) == []
    spec = es["spec"]
    assert crdschema.errors(crd, {**es, "spec": {**spec, "refreshIntervall": "1h"}})
    assert crdschema.errors(crd, {**es, "spec": {**spec, "secretStoreRef": {"name": "v", "kind": "Vault"}}})
    assert crdschema.errors(crd, {**es, "spec": {**spec, "data": [{"secretKey": "K", "remoteRef": {}}]}})


def test_every_field_values_pass_on_is_valid_for_the_crd(crd):
    """dataFrom, a SecretStore, every remoteRef field the values schema admits, another refresh interval."""
    every_field = {"key": "agentforge/app", "property": "p", "version": "3", "conversionStrategy": "Unicode",
                   "decodingStrategy": "Base64URL", "metadataPolicy": "None"}
    es_values = values(secretStoreRef={"name": "team-store", "kind": "SecretStore"}, refreshInterval="15m",
                       data=[{"secretKey": "SECRET_KEY", "remoteRef": every_field}],
                       dataFrom=[{"extract": every_field}])
    (es,) = render_chart(es_values).of_kind("ExternalSecret")
    assert crdschema.errors(crd, es) == []
    assert es["spec"]["dataFrom"] == [{"extract": every_field}]
    assert es["spec"]["secretStoreRef"] == {"name": "team-store", "kind": "SecretStore"}
    assert es["spec"]["refreshInterval"] == "15m"


def test_no_app_secret_is_rendered(objects):
    """The chart renders neither its generated Secret nor one under the ExternalSecret's target name (the operator
    owns that one): the only Secret left is Grafana's admin Secret."""
    assert objects.find("Secret", GENERATED) is None
    assert objects.find("Secret", TARGET) is None
    assert [s["metadata"]["name"] for s in objects.of_kind("Secret")] == [GRAFANA]


def test_every_app_secret_reference_names_the_target(objects):
    """Every secretKeyRef and secretRef of every container (init containers, the migration Job and the test pods
    included) names the ExternalSecret's Secret, except Grafana's own admin Secret; the data collector reads none."""
    refs = secret_refs(objects)
    names = {name for container_refs in refs.values() for name, _, _ in container_refs}
    assert names == {TARGET, GRAFANA}
    grafana = {where for where, container_refs in refs.items() if any(n == GRAFANA for n, _, _ in container_refs)}
    assert grafana == {(GRAFANA, "grafana")}
    backend = env_sources(objects, objects.get("Deployment", "agentforge-backend"), "backend")
    assert {env: (name, key) for env, (kind, name, key) in backend.items() if kind == "Secret"} == {
        key: (TARGET, key) for key in ("SECRET_KEY", "ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL")}
    assert not refs[("agentforge-data-collector", "data-collector")]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_the_keys_the_pods_read_are_the_keys_the_chart_requires(topology):
    """In each topology, the keys the pods read from the Secret without `optional` are exactly those the chart
    requires `data` to map, and the only optional one (the backend's wait-for-redis' REDIS_PASSWORD) is required
    with the bundled Redis; every other key the pods read is mapped."""
    _, required = TOPOLOGIES[topology]
    objects = render_chart(values(topology))
    refs = {ref for container_refs in secret_refs(objects).values() for ref in container_refs if ref[0] == TARGET}
    assert {key for _, key, optional in refs if not optional} == required
    assert {key for _, key, optional in refs if optional} == {"REDIS_PASSWORD"}
    assert "*" not in {key for _, key, _ in refs}
    (es,) = objects.of_kind("ExternalSecret")
    assert {item["secretKey"] for item in es["spec"]["data"]} == required


@pytest.mark.parametrize("topology,key", [(t, k) for t, (_, keys) in TOPOLOGIES.items() for k in sorted(keys)])
def test_a_mapping_without_a_key_the_pods_read_is_refused_naming_it(topology, key):
    _, keys = TOPOLOGIES[topology]
    error = render_error(values(topology, data=mapping(keys - {key})))
    assert f"externalSecrets.data lacks {key}, which the pods read" in error


def test_an_external_redis_may_leave_its_password_out():
    """wait-for-redis reads REDIS_PASSWORD as optional: a Redis without a password needs no mapping of it."""
    objects = render_chart(values("external-redis"))
    assert "REDIS_PASSWORD" not in {item["secretKey"] for item in objects.of_kind("ExternalSecret")[0]["spec"]["data"]}
    with_password = values("external-redis", data=mapping(TOPOLOGIES["external-redis"][1] | {"REDIS_PASSWORD"}))
    render_chart(with_password)


def test_data_from_alone_is_not_checked_key_by_key():
    """The fields of a remote object read whole are the operator's to see: dataFrom alone renders."""
    objects = render_chart(values(data=[], dataFrom=[{"extract": {"key": "agentforge/app"}}]))
    (es,) = objects.of_kind("ExternalSecret")
    assert es["spec"]["dataFrom"] == [{"extract": {"key": "agentforge/app"}}] and "data" not in es["spec"]


def test_checksum_follows_the_name_and_renders_are_identical():
    """As with secrets.existingSecret: no generated value, so two renders are the same object for object (what
    `helm template`, Argo CD and Flux need), and checksum/secret (backend) and checksum/password (Redis) hash the
    Secret's name. (Grafana's admin Secret, generated otherwise, is one of the user's here, as in
    ci/gitops-values.yaml.)"""
    fixed = values() | {"grafana": {"admin": {"existingSecret": "grafana-admin"}}}
    first, second = render_chart(fixed, fresh=True), render_chart(fixed, fresh=True)
    assert first == second and first.of_kind("Secret") == []
    digest = hashlib.sha256(TARGET.encode()).hexdigest()
    backend = first.get("Deployment", "agentforge-backend")["spec"]["template"]["metadata"]["annotations"]
    redis = first.get("StatefulSet", "agentforge-redis")["spec"]["template"]["metadata"]["annotations"]
    assert backend["checksum/secret"] == digest
    assert redis["checksum/password"] == digest


@pytest.mark.parametrize("release", ["r", "agentforge-prod", "release-" + "x" * 45])
def test_the_pods_read_the_target_under_any_release_name(release):
    """<fullname>-external-secrets, cut like every name of the release (at most 52 characters)."""
    objects = render_chart(values(), name=release)
    (es,) = objects.of_kind("ExternalSecret")
    target = es["spec"]["target"]["name"]
    assert target == es["metadata"]["name"] and len(target) <= 52
    if len(release) < 20:
        assert target == component_name("external-secrets", release)
    names = {name for refs in secret_refs(objects).values() for name, _, _ in refs}
    assert names == {target, objects.of_kind("Secret")[0]["metadata"]["name"]}


def test_an_external_database_needs_no_other_password_source():
    """DATABASE_URL from the store is the external database's credential, as with secrets.existingSecret."""
    render_chart(values("external-both"))


@pytest.mark.parametrize("change,message", [
    ({"secretStoreRef": {"name": ""}}, "externalSecrets.secretStoreRef.name is required"),
    ({"secretStoreRef": {"name": "vault", "kind": "Vault"}}, "at '/externalSecrets/secretStoreRef/kind'"),
    ({"secretStoreRef": {"name": "Vault_Store"}}, "at '/externalSecrets/secretStoreRef/name'"),
    ({"refreshInterval": "1 hour"}, "at '/externalSecrets/refreshInterval'"),
    ({"data": [{"secretKey": "SECRET_KEY"}]}, "at '/externalSecrets/data/0'"),
    ({"data": [{"secretKey": "SECRET_KEY", "remoteRef": {"key": "k", "propery": "p"}}]},
     "at '/externalSecrets/data/0/remoteRef'"),
    ({"dataFrom": [{"find": {"path": "agentforge"}}]}, "at '/externalSecrets/dataFrom/0'"),
    ({"data": mapping(TOPOLOGIES["bundled"][1]) + mapping({"SECRET_KEY"})},
     "externalSecrets.data[7] maps SECRET_KEY again"),
    ({"data": []}, "externalSecrets.data lacks SECRET_KEY, ENCRYPTION_KEY, POSTGRES_USER, POSTGRES_PASSWORD, "
                   "DATABASE_URL, REDIS_PASSWORD, REDIS_URL"),
])
def test_bad_values_refused_naming_the_key(change, message):
    es_values = values()
    es_values["externalSecrets"] = es_values["externalSecrets"] | change
    assert message in render_error(es_values)


def test_refused_together_with_an_existing_secret():
    error = render_error(values() | {"secrets": {"existingSecret": "my-app-secrets"}})
    assert 'externalSecrets.enabled and secrets.existingSecret ("my-app-secrets") both name the app Secret' in error


@pytest.mark.parametrize("extra,key", [
    ({"secrets": {"secretKey": "s" * 40}}, "secrets.secretKey"),
    ({"postgresql": {"auth": {"password": "pg"}}}, "postgresql.auth.password"),
    ({"externalDatabase": {"host": "db.example.net", "existingSecret": "db-pw"}}, "externalDatabase.existingSecret"),
    ({"externalRedis": {"host": "cache.example.net", "password": "rd"}}, "externalRedis.password"),
])
def test_an_inline_credential_it_would_ignore_is_refused(extra, key):
    topology = "external-both" if key.startswith("external") else "bundled"
    base = values(topology)
    error = render_error({**base, **{k: {**base.get(k, {}), **v} for k, v in extra.items()}})
    assert f'{key} is set together with externalSecrets.enabled (the Secret "{TARGET}", from your store)' in error


def test_a_url_setting_it_would_ignore_is_refused():
    """The URLs come whole from the store: a TLS mode the chart would compose into DATABASE_URL is refused."""
    base = values("external-database")
    error = render_error({**base, "externalDatabase": {**base["externalDatabase"], "sslMode": "require"}})
    assert f'DATABASE_URL comes from Secret "{TARGET}" (externalSecrets.enabled' in error
