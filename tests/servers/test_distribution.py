"""Publishing: the local registry script, `make publish` (ci/release.sh) pushing to it, the version guards, login
and signing."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
from pathlib import Path

import pytest

from harness.registry import (
    CHART_MEDIA_TYPE,
    DIGEST,
    PROV_MEDIA_TYPE,
    _pid_alive,
    _stable,
    chart_copy,
    check_version,
    package,
    publish,
    release,
    run,
    sha256,
    signed_package,
    start_registry,
    stop_registry,
    verify,
)
from harness.render import CHART, CHART_META, HELM, HELM3, load_yaml


class TestRegistryScript:
    def test_listens_on_loopback_only(self, registry):
        config = load_yaml((registry.dir / "config.yml").read_text())
        assert config["http"]["addr"] == registry.addr
        assert registry.addr.startswith("127.0.0.1:")
        assert registry.get("")[0] == 200

    def test_storage_is_the_temp_dir(self, registry, published_chart):
        config = load_yaml((registry.dir / "config.yml").read_text())
        assert config["storage"]["filesystem"]["rootdirectory"] == str(registry.dir / "storage")
        assert any((registry.dir / "storage").rglob("data"))

    def test_second_start_in_the_same_dir_refused(self, helm_env, registry):
        proc = run(["bash", "scripts/registry.sh", "start", registry.dir], helm_env, check=False)
        assert proc.returncode != 0
        assert "already runs" in proc.stderr

    def test_taken_port_reported(self, helm_env, registry, tmp_path):
        port = registry.addr.split(":")[1]
        proc = run(["bash", "scripts/registry.sh", "start", tmp_path, port], helm_env, check=False)
        assert proc.returncode != 0
        assert f"port {port} on 127.0.0.1 is taken" in proc.stderr
        assert not (tmp_path / "registry.pid").exists()

    def test_stop_ends_the_process_and_frees_the_port(self, helm_env, tmp_path):
        reg = start_registry(helm_env, tmp_path)
        pid = int((tmp_path / "registry.pid").read_text())
        stop_registry(helm_env, reg)
        assert not _pid_alive(pid)
        host, port = reg.addr.split(":")
        with socket.socket() as s:
            assert s.connect_ex((host, int(port))) != 0


class TestPublish:
    def test_release_reports_the_pushed_reference(self, published_chart, registry):
        assert published_chart.ref == registry.ref("charts/agentforge")
        assert published_chart.version == CHART_META["version"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", published_chart.digest)
        assert f"Digest: {published_chart.digest}" in published_chart.release_output
        assert registry.tags(published_chart.repository) == [published_chart.version]

    def test_manifest_digest_is_the_pushed_digest(self, published_chart):
        manifest = published_chart.registry.manifest(published_chart.repository, published_chart.version)
        assert "sha256:" + hashlib.sha256(manifest).hexdigest() == published_chart.digest

    def test_chart_layer_is_the_packaged_tgz(self, published_chart):
        manifest = json.loads(published_chart.registry.manifest(published_chart.repository, published_chart.version))
        layers = {layer["mediaType"]: layer for layer in manifest["layers"]}
        assert set(layers) == {CHART_MEDIA_TYPE}, "an unsigned release carries no provenance layer"
        assert layers[CHART_MEDIA_TYPE]["digest"] == sha256(published_chart.package)
        assert layers[CHART_MEDIA_TYPE]["size"] == published_chart.package.stat().st_size

    def test_manifest_annotations_from_chart_yaml(self, published_chart):
        annotations = json.loads(
            published_chart.registry.manifest(published_chart.repository, published_chart.version))["annotations"]
        assert annotations["org.opencontainers.image.version"] == CHART_META["version"]
        assert annotations["org.opencontainers.image.title"] == CHART_META["name"]
        assert annotations["org.opencontainers.image.source"] == CHART_META["sources"][0]

    @pytest.mark.parametrize("binary", [HELM, HELM3], ids=["helm4", "helm3"])
    def test_pull_gets_the_pushed_digest_and_bytes(self, helm_env, published_chart, tmp_path, binary):
        proc = run([binary, "pull", published_chart.ref, "--version", published_chart.version, "--plain-http",
                    "--destination", tmp_path], helm_env)
        assert DIGEST.findall(proc.stdout + proc.stderr) == [published_chart.digest]
        pulled = tmp_path / published_chart.package.name
        assert sha256(pulled) == sha256(published_chart.package)

    def test_show_values_is_values_yaml(self, helm_env, published_chart):
        out = run([HELM, "show", "values", published_chart.ref, "--version", published_chart.version,
                   "--plain-http"], helm_env).stdout
        assert out.strip() == (CHART / "values.yaml").read_text().strip()

    def test_show_chart_carries_the_artifacthub_annotations(self, helm_env, published_chart):
        out = run([HELM, "show", "chart", published_chart.ref, "--version", published_chart.version,
                   "--plain-http"], helm_env).stdout
        meta = load_yaml(out)
        assert meta["version"] == CHART_META["version"]
        assert meta["annotations"] == CHART_META["annotations"]

    @pytest.mark.parametrize("binary", [HELM, HELM3], ids=["helm4", "helm3"])
    def test_template_from_oci_equals_the_local_chart(self, helm_env, published_chart, binary):
        args = ["template", "agentforge", "--namespace", "agentforge", "--kube-version", "1.37.0"]
        remote = run([binary, *args[:2], published_chart.ref, *args[2:], "--version", published_chart.version,
                      "--plain-http"], helm_env).stdout
        local = run([binary, *args[:2], CHART, *args[2:]], helm_env).stdout
        assert _stable(remote) == _stable(local)
        assert len(_stable(remote)) > 10

    def test_pinned_by_digest(self, helm_env, published_chart):
        out = run([HELM, "show", "chart", f"{published_chart.ref}@{published_chart.digest}", "--plain-http"],
                  helm_env).stdout
        assert load_yaml(out)["version"] == published_chart.version
        wrong = run([HELM, "show", "chart", f"{published_chart.ref}@sha256:{'0' * 64}", "--plain-http"], helm_env,
                    check=False)
        assert wrong.returncode != 0
        assert "not found" in wrong.stderr

    def test_latest_version_resolved_without_version(self, helm_env, published_chart):
        out = run([HELM, "show", "chart", published_chart.ref, "--plain-http"], helm_env).stdout
        assert load_yaml(out)["version"] == published_chart.version


class TestReleaseRefusals:
    def test_same_version_refused(self, helm_env, published_chart, tmp_path):
        proc = release(helm_env, published_chart.ref.rsplit("/", 1)[0], tmp_path)
        assert proc.returncode == 1
        assert f"agentforge {published_chart.version} is already published" in proc.stderr
        assert f"refusing to publish agentforge {published_chart.version}" in proc.stderr
        assert "[release] package" not in proc.stderr and "[release] push" not in proc.stderr
        # Nothing moved: the registry still serves the first push.
        manifest = published_chart.registry.manifest(published_chart.repository, published_chart.version)
        assert "sha256:" + hashlib.sha256(manifest).hexdigest() == published_chart.digest

    @pytest.mark.parametrize("lower", ["0.9.9", "1.0.0-rc.1", "1.0.0+build.2"])
    def test_version_not_above_the_highest_refused(self, helm_env, registry, tmp_path, lower):
        path = f"lower-{lower.replace('+', '-')}"
        publish(helm_env, registry, path, tmp_path / "first", chart_copy(tmp_path / "c1", "1.0.0"))
        proc = release(helm_env, registry.ref(path), tmp_path / "second", chart_copy(tmp_path / "c2", lower))
        assert proc.returncode == 1
        assert f"agentforge {lower} is not above the highest published version 1.0.0" in proc.stderr
        assert registry.tags(f"{path}/agentforge") == ["1.0.0"]

    def test_bumped_versions_accepted_and_the_highest_wins(self, helm_env, registry, tmp_path):
        for version in ["1.0.0", "1.1.0-rc.1", "1.1.0", "1.10.0"]:
            publish(helm_env, registry, "upgrade", tmp_path / version, chart_copy(tmp_path / f"c{version}", version))
        assert sorted(registry.tags("upgrade/agentforge")) == ["1.0.0", "1.1.0", "1.1.0-rc.1", "1.10.0"]
        out = run([HELM, "show", "chart", registry.ref("upgrade/agentforge"), "--plain-http"], helm_env).stdout
        assert load_yaml(out)["version"] == "1.10.0"
        proc = release(helm_env, registry.ref("upgrade"), tmp_path / "again", chart_copy(tmp_path / "c2", "1.9.0"))
        assert proc.returncode == 1
        assert "1.9.0 is not above the highest published version 1.10.0" in proc.stderr
        # The tag list is paginated (Link: <...>; rel="next"); every page is read.
        assert sorted(check_version.list_tags(registry.ref("upgrade"), "agentforge", plain_http=True,
                                              page_size=1)) == ["1.0.0", "1.1.0", "1.1.0-rc.1", "1.10.0"]

    def test_dry_run_pushes_nothing(self, helm_env, registry, tmp_path):
        proc = release(helm_env, registry.ref("dry"), tmp_path, DRY_RUN="1",
                       RELEASE_TAG=f"v{CHART_META['version']}")
        assert proc.returncode == 0, proc.stderr
        assert "DRY_RUN=1: not pushing" in proc.stderr
        assert (tmp_path / "dist" / f"agentforge-{CHART_META['version']}.tgz").exists()
        assert registry.tags("dry/agentforge") == []

    @pytest.mark.parametrize("env,message", [
        ({"RELEASE_TAG": "v9.9.9"}, f"RELEASE_TAG=v9.9.9 does not name the chart version {CHART_META['version']}"),
        ({"REGISTRY": "https://127.0.0.1/charts"}, "REGISTRY must be an oci:// reference"),
        ({"REGISTRY": ""}, "REGISTRY is not set"),
        ({"REGISTRY_USERNAME": "ci"}, "set both REGISTRY_USERNAME and REGISTRY_PASSWORD"),
        ({"PLAIN_HTTP": "0"}, "could not list the published versions"),
    ], ids=["tag-mismatch", "not-oci", "no-registry", "half-credentials", "https-to-http"])
    def test_bad_input_refused_before_any_push(self, helm_env, registry, tmp_path, env, message):
        proc = release(helm_env, registry.ref("refused"), tmp_path, **env)
        assert proc.returncode == 1
        assert message in proc.stderr
        assert registry.tags("refused/agentforge") == []

    def test_unreachable_registry_is_an_error(self, helm_env, tmp_path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, never listening: connections are refused
            proc = release(helm_env, f"oci://127.0.0.1:{port}/charts", tmp_path)
        assert proc.returncode == 1
        assert f"cannot reach http://127.0.0.1:{port}" in proc.stderr
        assert "nothing was pushed" in proc.stderr


class TestCredentials:
    def test_login_from_environment_publishes(self, helm_env, auth_registry, tmp_path):
        published = publish(helm_env, auth_registry, "charts", tmp_path, REGISTRY_USERNAME="ci",
                            REGISTRY_PASSWORD="s3cret-pass")
        assert auth_registry.tags(published.repository, auth=("ci", "s3cret-pass")) == [published.version]
        assert f"log in to {auth_registry.addr} as ci" in published.release_output
        # The login went to a throwaway registry config, not the caller's.
        user_config = Path(helm_env["HELM_REGISTRY_CONFIG"])
        assert not user_config.exists() or auth_registry.addr not in user_config.read_text()
        # The same version again is refused by the version check, which lists tags with the credentials.
        proc = release(helm_env, auth_registry.ref("charts"), tmp_path / "again", REGISTRY_USERNAME="ci",
                       REGISTRY_PASSWORD="s3cret-pass")
        assert proc.returncode == 1
        assert "is already published" in proc.stderr

    def test_no_credentials_is_a_clear_error(self, helm_env, auth_registry, tmp_path):
        proc = release(helm_env, auth_registry.ref("anonymous"), tmp_path)
        assert proc.returncode == 1
        assert "the registry wants credentials: set REGISTRY_USERNAME and REGISTRY_PASSWORD" in proc.stderr

    def test_wrong_password_fails_at_login(self, helm_env, auth_registry, tmp_path):
        proc = release(helm_env, auth_registry.ref("wrong"), tmp_path, REGISTRY_USERNAME="ci",
                       REGISTRY_PASSWORD="not-it")
        assert proc.returncode == 1
        assert f"helm registry login {auth_registry.addr} failed" in proc.stderr
        assert "not-it" not in proc.stderr + proc.stdout


class TestSigning:
    def test_signed_package_verifies(self, helm_env, gpg_key, tmp_path):
        tgz = signed_package(helm_env, gpg_key, tmp_path)
        assert Path(f"{tgz}.prov").exists()
        for binary in (HELM, HELM3):
            proc = verify(helm_env, tgz, gpg_key["pubring"], binary)
            assert proc.returncode == 0, proc.stderr
            assert "Signed by: AgentForge Test Signer" in proc.stdout
            assert f"Chart Hash Verified: {sha256(tgz)}" in proc.stdout

    def test_provenance_names_the_chart_and_its_hash(self, helm_env, gpg_key, tmp_path):
        tgz = signed_package(helm_env, gpg_key, tmp_path)
        prov = Path(f"{tgz}.prov").read_text()
        assert prov.startswith("-----BEGIN PGP SIGNED MESSAGE-----")
        assert f"{tgz.name}: {sha256(tgz)}" in prov
        assert f"version: {CHART_META['version']}" in prov

    @pytest.mark.parametrize("tamper", ["flip-a-byte", "other-chart", "edit-provenance"])
    def test_tampered_package_fails_verify(self, helm_env, gpg_key, tmp_path, tamper):
        tgz = signed_package(helm_env, gpg_key, tmp_path / "signed")
        prov = Path(f"{tgz}.prov")
        if tamper == "flip-a-byte":
            data = bytearray(tgz.read_bytes())
            data[len(data) // 2] ^= 0xFF
            tgz.write_bytes(bytes(data))
        elif tamper == "other-chart":
            # A valid chart of the same name and version with one more value, under the genuine signature.
            other = package(helm_env, tmp_path / "other", chart_copy(tmp_path / "c", CHART_META["version"],
                                                                         "injected: true\n"))
            shutil.copy(other.stdout.strip().splitlines()[-1], tgz)
        else:
            prov.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, prov.read_text()))
        proc = verify(helm_env, tgz, gpg_key["pubring"])
        assert proc.returncode != 0
        assert {"flip-a-byte": "sha256 sum does not match", "other-chart": "sha256 sum does not match",
                "edit-provenance": "openpgp"}[tamper] in proc.stderr

    def test_other_key_does_not_verify(self, helm_env, gpg_key, tmp_path):
        tgz = signed_package(helm_env, gpg_key, tmp_path)
        proc = verify(helm_env, tgz, gpg_key["other_pubring"])
        assert proc.returncode != 0
        assert "unknown entity" in proc.stderr

    def test_unsigned_repackage_drops_the_old_provenance(self, helm_env, gpg_key, tmp_path):
        tgz = signed_package(helm_env, gpg_key, tmp_path)
        proc = package(helm_env, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert not Path(f"{tgz}.prov").exists(), "a stale .prov would be pushed beside an unsigned package"
        assert verify(helm_env, tgz, gpg_key["pubring"]).returncode != 0

    @pytest.mark.parametrize("env,message", [
        ({"SIGN_KEY": "Nobody <nobody@example.invalid>"}, "is 'Nobody <nobody@example.invalid>' a secret key in"),
        ({"SIGN_KEY": "AgentForge Test Signer", "KEYRING": "/nonexistent/secring.gpg"},
         "gpg --export-secret-keys 'AgentForge Test Signer' > secring.gpg"),
        ({"KEYRING": "secring.gpg"}, "KEYRING is set but SIGN_KEY is empty"),
    ], ids=["unknown-key", "missing-keyring", "keyring-without-key"])
    def test_bad_signing_input_leaves_no_package(self, helm_env, gpg_key, tmp_path, env, message):
        env = {"KEYRING": str(gpg_key["secring"]), **env}
        proc = package(helm_env, tmp_path, **env)
        assert proc.returncode == 1
        assert message in proc.stderr
        assert not list(tmp_path.glob("*.tgz*"))

    def test_unsigned_release_refused_by_verify(self, helm_env, gpg_key, published_chart, tmp_path):
        proc = run([HELM, "pull", published_chart.ref, "--version", published_chart.version, "--plain-http",
                    "--verify", "--keyring", gpg_key["pubring"], "--destination", tmp_path], helm_env, check=False)
        assert proc.returncode != 0
        assert "failed to fetch provenance" in proc.stderr

    def test_signed_release_pulls_with_verify(self, helm_env, gpg_key, registry, tmp_path):
        published = publish(helm_env, registry, "signed", tmp_path, SIGN_KEY=gpg_key["uid"],
                            KEYRING=str(gpg_key["secring"]))
        manifest = json.loads(registry.manifest(published.repository, published.version))
        layers = {layer["mediaType"]: layer["digest"] for layer in manifest["layers"]}
        assert layers == {CHART_MEDIA_TYPE: sha256(published.package),
                          PROV_MEDIA_TYPE: sha256(Path(f"{published.package}.prov"))}
        for binary in (HELM, HELM3):
            dest = tmp_path / Path(binary).name
            dest.mkdir()  # helm 4.3 pull --verify does not create its --destination
            proc = run([binary, "pull", published.ref, "--version", published.version, "--plain-http", "--verify",
                        "--keyring", gpg_key["pubring"], "--destination", dest], helm_env)
            assert "Signed by: AgentForge Test Signer" in proc.stdout + proc.stderr
            assert sha256(dest / published.package.name) == sha256(published.package)
        refused = run([HELM, "pull", published.ref, "--version", published.version, "--plain-http", "--verify",
                       "--keyring", gpg_key["other_pubring"], "--destination", tmp_path], helm_env, check=False)
        assert refused.returncode != 0
        assert "unknown entity" in refused.stderr
        # install, upgrade and template check the signature the same way before they render.
        for keyring, ok in ((gpg_key["pubring"], True), (gpg_key["other_pubring"], False)):
            proc = run([HELM, "template", "agentforge", published.ref, "--version", published.version, "--plain-http",
                        "--verify", "--keyring", keyring], helm_env, check=False)
            assert (proc.returncode == 0) == ok, proc.stderr
