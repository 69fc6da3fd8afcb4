"""Every data claim of the chart: its storage class (the component's, else global.storageClass, each checked as a
Kubernetes name) and, for the StatefulSets, a claim of the user's own (persistence.existingClaim) mounted where the
template's claim would be."""

from __future__ import annotations

import pytest

from harness.objects import container, pod_spec, volumes_by_mount
from harness.render import render_chart, render_error

# values key: (how the claim is made, the object holding it) of every data claim at the defaults.
CLAIMS = {
    "postgresql": ("template", "agentforge-postgresql"),
    "redis": ("template", "agentforge-redis"),
    "prometheus": ("claim", "agentforge-prometheus"),
    "grafana": ("claim", "agentforge-grafana"),
}
DATA_MOUNTS = {"postgresql": "/var/lib/postgresql/data", "redis": "/data"}


def claim_specs(objects) -> dict[str, dict]:
    """{values key: claim spec} of every data claim of a render."""
    out = {}
    for key, (how, name) in CLAIMS.items():
        if how == "template":
            for template in objects.get("StatefulSet", name)["spec"].get("volumeClaimTemplates", []):
                out[key] = template["spec"]
        elif claim := objects.find("PersistentVolumeClaim", name):
            out[key] = claim["spec"]
    return out


class TestStorageClass:
    def test_cluster_default_when_none_is_given(self, default_render):
        specs = claim_specs(default_render)
        assert set(specs) == set(CLAIMS)
        assert all("storageClassName" not in spec for spec in specs.values())

    def test_global_class_for_every_claim(self):
        specs = claim_specs(render_chart({"global": {"storageClass": "fast-ssd"}}))
        assert {key: spec["storageClassName"] for key, spec in specs.items()} == dict.fromkeys(CLAIMS, "fast-ssd")

    def test_a_components_class_wins_and_dash_means_none(self):
        specs = claim_specs(render_chart({"global": {"storageClass": "fast-ssd"},
                                          "postgresql": {"persistence": {"storageClass": "db.example.com"}},
                                          "grafana": {"persistence": {"storageClass": "-"}}}))
        assert {key: spec["storageClassName"] for key, spec in specs.items()} == {
            "postgresql": "db.example.com", "redis": "fast-ssd", "prometheus": "fast-ssd", "grafana": ""}

    @pytest.mark.parametrize("path", ["global.storageClass", "postgresql.persistence.storageClass",
                                      "redis.persistence.storageClass", "prometheus.persistence.storageClass",
                                      "grafana.persistence.storageClass"])
    @pytest.mark.parametrize("bad", ["Fast_SSD", "fast ssd", "-fast", "x" * 254])
    def test_not_a_kubernetes_name_refused_naming_the_key(self, path, bad):
        values: dict = {}
        node = values
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = bad
        assert f"at '/{path.replace('.', '/')}'" in render_error(values)


class TestExistingClaim:
    @pytest.mark.parametrize("component", ["postgresql", "redis"])
    def test_mounted_where_the_template_claim_was(self, default_render, component):
        objects = render_chart({component: {"persistence": {"existingClaim": f"{component}-data"}}})
        workload = objects.get("StatefulSet", f"agentforge-{component}")
        assert "volumeClaimTemplates" not in workload["spec"]
        volumes = volumes_by_mount(workload, component)
        assert volumes[DATA_MOUNTS[component]] == {"name": "data",
                                                   "persistentVolumeClaim": {"claimName": f"{component}-data"}}
        # The same mount as with the template's claim: only the volume's source changes.
        before = default_render.get("StatefulSet", f"agentforge-{component}")
        assert container(before, component)["volumeMounts"] == container(workload, component)["volumeMounts"]
        assert [t["metadata"]["name"] for t in before["spec"]["volumeClaimTemplates"]] == ["data"]
        assert "data" not in {v["name"] for v in pod_spec(before)["volumes"]}
        # The other StatefulSet keeps its own claim.
        other = "redis" if component == "postgresql" else "postgresql"
        assert objects.get("StatefulSet", f"agentforge-{other}")["spec"]["volumeClaimTemplates"]

    @pytest.mark.parametrize("component", ["postgresql", "redis"])
    def test_bad_claim_name_refused_naming_the_key(self, component):
        error = render_error({component: {"persistence": {"existingClaim": "My_Claim"}}})
        assert f"at '/{component}/persistence/existingClaim'" in error
