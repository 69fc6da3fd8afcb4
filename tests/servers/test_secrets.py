"""The generated Secret on upgrade: helm's lookup against a fake API server keeps every value data depends on."""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit

import pytest

from harness.appsecret import ENCRYPTION_KEY, SECRET, decoded
from harness.fakeapi import upgrade_render
from harness.render import RenderError


class TestLiveSecretOnUpgrade:
    """What an upgrade applies (helm reads the live app Secret through `lookup`, here from a fake API server): every
    generated value the data depends on is read back, never generated anew, and the URLs carry the live passwords."""

    LIVE = {"SECRET_KEY": "live-secret-key-" + "s" * 48, "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "POSTGRES_PASSWORD": "live-postgres-password-0123456789", "REDIS_PASSWORD": "live-redis-password-0123456"}

    @pytest.fixture(autouse=True)
    def live(self, api):
        api.secrets = {("agentforge", SECRET): dict(self.LIVE)}

    def test_generated_values_read_back(self, api):
        data = decoded(upgrade_render(api).get("Secret", SECRET))
        assert {key: data[key] for key in self.LIVE} == self.LIVE
        assert unquote(urlsplit(data["DATABASE_URL"]).password) == self.LIVE["POSTGRES_PASSWORD"]
        assert unquote(urlsplit(data["REDIS_URL"]).password) == self.LIVE["REDIS_PASSWORD"]

    def test_only_the_secret_of_the_release_namespace(self, api):
        data = decoded(upgrade_render(api, namespace="team-b").get("Secret", SECRET))
        assert all(data[key] != value for key, value in self.LIVE.items())

    @pytest.mark.parametrize("key,value", [
        ("secrets.encryptionKey", base64.urlsafe_b64encode(bytes(range(200, 232))).decode()),
        ("postgresql.auth.password", "another-postgres-password")])
    def test_a_different_value_refused_naming_it(self, api, key, value):
        with pytest.raises(RenderError) as refused:
            upgrade_render(api, "--set", f"{key}={value}")
        assert f'{key} differs from the value already in Secret "{SECRET}"' in refused.value.stderr
