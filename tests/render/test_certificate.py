"""certificate.enabled: one cert-manager Certificate for every hostname of the edge, checked against cert-manager's
own CRD (its Go module, at the version scripts/versions.env pins), into the Secret the Ingresses then use."""

import pytest

from harness import crdschema
from harness.render import pinned, render_chart, render_error

ISSUER = {"enabled": True, "issuerRef": {"name": "letsencrypt"}}
EDGE = {"ingress": {"enabled": True, "controller": "traefik", "hosts": ["a.example.com"]},
        "httpRoute": {"enabled": True, "controller": "traefik", "parentRef": {"name": "edge"},
                      "hostnames": ["a.example.com", "b.example.com"]},
        "certificate": ISSUER}


@pytest.fixture(scope="module")
def objects():
    return render_chart(EDGE)


def test_one_certificate_for_every_hostname_of_the_edge(objects):
    (cert,) = objects.of_kind("Certificate")
    assert cert["spec"]["dnsNames"] == ["a.example.com", "b.example.com"]
    assert cert["spec"]["issuerRef"] == {"name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert cert["spec"]["secretName"] == "agentforge-tls"


def test_the_ingresses_use_its_secret(objects):
    for ingress in objects.of_kind("Ingress"):
        assert ingress["spec"]["tls"] == [{"secretName": "agentforge-tls", "hosts": ["a.example.com"]}]


def test_valid_for_cert_managers_crd(objects):
    crd = (crdschema.module_dir("github.com/cert-manager/cert-manager", pinned("CERT_MANAGER"))
           / "deploy/crds/cert-manager.io_certificates.yaml")
    (cert,) = objects.of_kind("Certificate")
    assert crdschema.errors(crd, cert) == []
    assert crdschema.errors(crd, {**cert, "spec": {**cert["spec"], "dnsName": ["x"]}})


def test_none_by_default(default_render):
    assert default_render.of_kind("Certificate") == []


@pytest.mark.parametrize("values,message", [
    ({"certificate": {"enabled": True}}, "certificate.issuerRef.name is required"),
    ({"certificate": ISSUER}, "certificate.enabled needs a hostname"),
    ({**EDGE, "ingress": {**EDGE["ingress"], "certManager": {"clusterIssuer": "x"}}}, "set one of them"),
    ({"certificate": {**ISSUER, "duration": "90d"}}, "duration"),
    ({"certificate": {**ISSUER, "issuerRef": {"name": "x", "kind": "Vault"}}}, "kind"),
])
def test_bad_values_refused_naming_the_key(values, message):
    assert message in render_error(values)


def test_routes_without_hostnames_leave_nothing_to_certify():
    values = {"httpRoute": {**EDGE["httpRoute"], "hostnames": []}, "certificate": ISSUER}
    assert "httpRoute.hostnames" in render_error(values)



def test_lifetime_renewal_secret_and_issuer_are_values():
    values = {**EDGE, "certificate": {"enabled": True, "secretName": "edge-cert", "duration": "2160h",
                                      "renewBefore": "360h",
                                      "issuerRef": {"name": "ca", "kind": "Issuer", "group": "example.io"}}}
    objects = render_chart(values)
    (cert,) = objects.of_kind("Certificate")
    assert (cert["spec"]["duration"], cert["spec"]["renewBefore"]) == ("2160h", "360h")
    assert cert["spec"]["issuerRef"] == {"name": "ca", "kind": "Issuer", "group": "example.io"}
    assert cert["spec"]["secretName"] == "edge-cert"
    for ingress in objects.of_kind("Ingress"):
        assert ingress["spec"]["tls"][0]["secretName"] == "edge-cert"
