"""Grafana's admin Secret on upgrade: helm's lookup against a fake API server keeps the live password."""

from __future__ import annotations

import base64
import hashlib

import pytest

from harness.fakeapi import upgrade_render
from harness.monitoring import GRAFANA
from harness.render import RenderError


class TestLiveSecretOnUpgrade:
    """What an upgrade renders (helm reads the live Secret through `lookup`; here from a fake API server): the kept
    values come from the live Secret of the same name in the release's namespace, never generated anew."""

    LIVE = {"admin-user": "admin", "admin-password": "live-admin-password-0123456789ab",
            "secret-key": "live-grafana-encryption-key-0123456789ab"}

    @staticmethod
    def render(api, *args: str, namespace: str = "agentforge") -> dict:
        return {(o["kind"], o["metadata"]["name"]): o for o in upgrade_render(api, *args, namespace=namespace)}

    @staticmethod
    def data(objects) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in objects[("Secret", GRAFANA)]["data"].items()}

    @pytest.fixture(autouse=True)
    def live(self, api):
        api.secrets = {("agentforge", GRAFANA): dict(self.LIVE)}

    def test_password_and_key_reused_from_the_live_secret(self, api):
        first, second = self.render(api), self.render(api)
        assert self.data(first) == self.LIVE
        # Nothing random is left: a second upgrade renders the same Secret and rolls no pod.
        assert first[("Secret", GRAFANA)] == second[("Secret", GRAFANA)]
        checksum = [o[("Deployment", GRAFANA)]["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
                    for o in (first, second)]
        assert checksum[0] == checksum[1]

    def test_admin_user_change_rolls_the_pod_and_keeps_the_rest(self, api):
        """checksum/secret covers the Secret: with the kept values live, it changes when, and only when, it does."""
        def annotation(objects):
            return objects[("Deployment", GRAFANA)]["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
        base = self.render(api)
        renamed = self.render(api, "--set", "grafana.admin.user=root")
        assert self.data(renamed) == self.LIVE | {"admin-user": "root"}
        assert annotation(renamed) != annotation(base)
        assert annotation(self.render(api, "--set", "grafana.datasourceUid=other")) == annotation(base)
        assert annotation(base) != hashlib.sha256(b"").hexdigest()

    @pytest.mark.parametrize("args,namespace", [(("--set", "fullnameOverride=af"), "agentforge"), ((), "team-b")])
    def test_only_the_secret_of_the_same_name_and_namespace(self, api, args, namespace):
        objects = self.render(api, *args, namespace=namespace)
        (secret,) = [o for (kind, _), o in objects.items() if kind == "Secret" and "admin-password" in o["data"]]
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data["admin-password"] != self.LIVE["admin-password"] and len(data["admin-password"]) == 32
        assert data["secret-key"] != self.LIVE["secret-key"] and len(data["secret-key"]) == 40

    def test_a_new_password_refused_against_the_live_one(self, api):
        with pytest.raises(RenderError) as err:
            self.render(api, "--set", "grafana.admin.password=another-admin-password")
        assert f'grafana.admin.password differs from the value already in Secret "{GRAFANA}" (key admin-password)' \
            in err.value.stderr

    def test_the_live_password_given_again_accepted(self, api):
        objects = self.render(api, "--set", f"grafana.admin.password={self.LIVE['admin-password']}")
        assert self.data(objects) == self.LIVE
