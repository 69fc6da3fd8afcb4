"""The chart installed from the OCI registry it was published to, on the local cluster."""

from __future__ import annotations

import json


def test_install_from_oci_on_the_cluster(cli, published_chart):
    """The published chart installs from oci://127.0.0.1:PORT on the test cluster, at the pushed digest."""
    namespace = "af-e2e-oci"
    cli.create_namespace(namespace, {"pod-security.kubernetes.io/enforce": "restricted"})
    try:
        cli.helm("install", "agentforge", published_chart.ref, "--version", published_chart.version,
                 "--plain-http", "--namespace", namespace, "--wait", "--timeout", "5m")
        status = json.loads(cli.helm("status", "agentforge", "--namespace", namespace, "--output", "json").stdout)
        assert status["info"]["status"] == "deployed"
        metadata = json.loads(cli.helm("get", "metadata", "agentforge", "--namespace", namespace,
                                       "--output", "json").stdout)
        assert (metadata["chart"], metadata["version"]) == ("agentforge", published_chart.version)
        assert cli.get(namespace, "job", "agentforge-migrate")["status"].get("succeeded") == 1
    finally:
        cli.cleanup(namespace, "agentforge")
