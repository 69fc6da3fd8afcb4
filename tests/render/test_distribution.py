"""Distribution: package, sign, publish to an OCI registry and pull back; the Artifact Hub metadata.

The `servers` tests start a real OCI registry (CNCF distribution, .tools/bin/registry) on 127.0.0.1 through
scripts/registry.sh, publish with ci/release.sh and read back with helm. `published_chart` is the chart as a
user finds it in a registry: install tests take its `ref` and `version`.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from chart import CHART, CHART_META, HELM, HELM3, ROOT, TOOLS_BIN, load_yaml, pod_spec

REGISTRY_BIN = TOOLS_BIN / "registry"
TIMEOUT = 120  # seconds, for any one command
CHART_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
PROV_MEDIA_TYPE = "application/vnd.cncf.helm.chart.provenance.v1.prov"
DIGEST = re.compile(r"^Digest: (sha256:[0-9a-f]{64})$", re.M)


def _load_check_version():
    spec = importlib.util.spec_from_file_location("check_version", ROOT / "ci" / "check_version.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_version = _load_check_version()


def run(cmd: list, env: dict, *, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def chart_copy(dest: Path, version: str, values_suffix: str = "") -> Path:
    """A copy of the chart with another version (and optionally extra text at the end of values.yaml)."""
    shutil.copytree(CHART, dest)
    chart_yaml = dest / "Chart.yaml"
    chart_yaml.write_text(re.sub(r"(?m)^version: .*$", f"version: {version}", chart_yaml.read_text()))
    if values_suffix:
        with (dest / "values.yaml").open("a") as f:
            f.write(values_suffix)
    return dest


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def helm_env(tmp_path_factory) -> dict:
    """Environment for helm and the scripts: helm's config, caches and registry logins in a temp folder."""
    home = tmp_path_factory.mktemp("helm-home")
    release_settings = {"SIGN_KEY", "KEYRING", "PASSPHRASE_FILE", "DESTINATION", "CHART_DIR", "PLAIN_HTTP",
                        "DRY_RUN", "RELEASE_TAG", "GNUPGHOME"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HELM_", "REGISTRY")) and k not in release_settings}
    env.update(HELM_CACHE_HOME=str(home / "cache"), HELM_CONFIG_HOME=str(home / "config"),
               HELM_DATA_HOME=str(home / "data"), HELM_REGISTRY_CONFIG=str(home / "registry.json"),
               HELM=HELM, PATH=f"{TOOLS_BIN}{os.pathsep}{os.environ['PATH']}")
    return env


@dataclass
class Registry:
    addr: str  # 127.0.0.1:PORT
    dir: Path

    def ref(self, path: str) -> str:
        return f"oci://{self.addr}/{path}"

    def get(self, path: str, accept: str = "application/json", auth: tuple[str, str] | None = None):
        """GET /v2/<path>; (status, body bytes)."""
        headers = {"Accept": accept}
        if auth:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        req = urllib.request.Request(f"http://{self.addr}/v2/{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def tags(self, repository: str, auth: tuple[str, str] | None = None) -> list[str]:
        status, body = self.get(f"{repository}/tags/list", auth=auth)
        return [] if status == 404 else json.loads(body)["tags"]

    def manifest(self, repository: str, tag: str) -> bytes:
        status, body = self.get(f"{repository}/manifests/{tag}", accept="application/vnd.oci.image.manifest.v1+json")
        assert status == 200, body
        return body


def start_registry(helm_env: dict, directory: Path, *extra_args: str, **env: str) -> Registry:
    if not REGISTRY_BIN.exists():
        pytest.fail(f"{REGISTRY_BIN} is missing: run `make tools`")
    # REGISTRY_LIFETIME bounds the server's life even if this session dies before its finalizer runs.
    proc = run(["bash", "scripts/registry.sh", "start", directory, *extra_args],
               {**helm_env, "REGISTRY_LIFETIME": "1800", **env})
    return Registry(proc.stdout.strip().splitlines()[-1], directory)


def stop_registry(helm_env: dict, registry: Registry) -> None:
    run(["bash", "scripts/registry.sh", "stop", registry.dir], helm_env)


@pytest.fixture(scope="session")
def registry(helm_env, tmp_path_factory):
    reg = start_registry(helm_env, tmp_path_factory.mktemp("registry"))
    yield reg
    stop_registry(helm_env, reg)


def release(helm_env: dict, registry_ref: str, tmp_path: Path, chart_dir: Path | None = None,
            **env: str) -> subprocess.CompletedProcess:
    """ci/release.sh against a plain-HTTP registry; not checked (callers assert the exit code)."""
    env = {**helm_env, "REGISTRY": registry_ref, "PLAIN_HTTP": "1", "DESTINATION": str(tmp_path / "dist"),
           "CHART_DIR": str(chart_dir or CHART), **env}
    return run(["bash", "ci/release.sh"], env, check=False)


@dataclass
class Published:
    """A chart release in the registry: `helm install NAME {ref} --version {version} --plain-http`."""
    ref: str  # oci://127.0.0.1:PORT/charts/agentforge
    version: str
    digest: str  # of the manifest, as helm push printed it
    package: Path  # the .tgz that was pushed
    registry: Registry
    repository: str  # charts/agentforge, for the distribution API
    release_output: str


def publish(helm_env, registry: Registry, path: str, tmp_path: Path, chart_dir: Path | None = None,
            **env: str) -> Published:
    proc = release(helm_env, registry.ref(path), tmp_path, chart_dir, **env)
    assert proc.returncode == 0, proc.stderr
    ref_version, digest = proc.stdout.strip().splitlines()[-1].rsplit("@", 1)
    ref, version = ref_version.rsplit(":", 1)
    name = ref.rsplit("/", 1)[1]
    return Published(ref, version, digest, tmp_path / "dist" / f"{name}-{version}.tgz", registry,
                     f"{path}/{name}", proc.stderr)


@pytest.fixture(scope="session")
def published_chart(helm_env, registry, tmp_path_factory) -> Published:
    """The chart of this checkout, published unsigned by ci/release.sh to oci://<registry>/charts."""
    return publish(helm_env, registry, "charts", tmp_path_factory.mktemp("published"))


@pytest.fixture(scope="session")
def gpg_key(tmp_path_factory):
    """A throwaway signing key (no passphrase) in a temp GNUPGHOME, exported in the formats helm reads."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    keys = tmp_path_factory.mktemp("keys")
    env = {**os.environ, "GNUPGHOME": str(home)}
    gpg = ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    uids = {"signer": "AgentForge Test Signer <signer@example.invalid>",
            "other": "Someone Else <other@example.invalid>"}
    for uid in uids.values():
        run([*gpg, "--quick-generate-key", uid, "ed25519", "sign", "1d"], env)
    # helm reads only the legacy keyring format; GnuPG >= 2.1 writes it on export. Kept outside GNUPGHOME,
    # where gpg would try to migrate a secring.gpg.
    for name, uid in uids.items():
        (keys / f"{name}-secring.gpg").write_bytes(
            subprocess.run([*gpg, "--export-secret-keys", uid], env=env, capture_output=True, check=True,
                           timeout=TIMEOUT).stdout)
        (keys / f"{name}-pubring.gpg").write_bytes(
            subprocess.run([*gpg, "--export", uid], env=env, capture_output=True, check=True,
                           timeout=TIMEOUT).stdout)
    yield {"uid": uids["signer"], "secring": keys / "signer-secring.gpg", "pubring": keys / "signer-pubring.gpg",
           "other_pubring": keys / "other-pubring.gpg", "other_secring": keys / "other-secring.gpg"}
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, timeout=TIMEOUT, check=False)


def package(helm_env: dict, dest: Path, chart_dir: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    env = {**helm_env, "DESTINATION": str(dest), "CHART_DIR": str(chart_dir or CHART), **env}
    return run(["bash", "scripts/package.sh"], env, check=False)


def signed_package(helm_env, gpg_key, dest: Path, chart_dir: Path | None = None) -> Path:
    proc = package(helm_env, dest, chart_dir, SIGN_KEY=gpg_key["uid"], KEYRING=str(gpg_key["secring"]))
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def verify(helm_env, tgz: Path, keyring: Path, binary: str = HELM) -> subprocess.CompletedProcess:
    return run([binary, "verify", "--keyring", keyring, tgz], helm_env, check=False)


# ------------------------------------------------------------------------------------------ the registry

@pytest.mark.servers
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------------- publish and pull

@pytest.mark.servers
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


def _stable(manifest_text: str) -> list[dict]:
    """Rendered objects minus what is random on every render: generated secrets and the checksums of them."""
    docs = [d for d in yaml.safe_load_all(manifest_text) if d]
    for doc in docs:
        if doc["kind"] == "Secret":
            doc.pop("data", None)
            doc.pop("stringData", None)
        for meta in (doc.get("metadata", {}), doc.get("spec", {}).get("template", {}).get("metadata", {})):
            annotations = meta.get("annotations") or {}
            for key in [k for k in annotations if k.startswith("checksum/")]:
                del annotations[key]
    return docs


# ------------------------------------------------------------------------------------ release guards

class TestVersionOrder:
    """ci/check_version.py's semver precedence, which decides what may be published."""

    ORDERED = ["0.1.0", "0.9.0", "0.10.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
               "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]

    def test_semver_precedence(self):
        shuffled = self.ORDERED[::2] + self.ORDERED[1::2]
        assert sorted(shuffled, key=check_version.semver_key) == self.ORDERED

    def test_build_metadata_does_not_rank(self):
        assert check_version.semver_key("1.0.0+build.2") == check_version.semver_key("1.0.0")

    def test_tags_that_are_not_versions_ignored(self):
        tags = ["latest", "0.1.0", "0.10.0", "0.9.0_build.1", "sha256-ab12.sig", "01.0.0", "v1.0.0"]
        assert check_version.tag_versions(tags) == ["0.10.0", "0.9.0+build.1", "0.1.0"]

    @pytest.mark.parametrize("bad", ["1.0", "v1.0.0", "1.0.0-", "01.0.0"])
    def test_not_a_semver_rejected(self, bad):
        with pytest.raises(ValueError, match="not a semantic version"):
            check_version.semver_key(bad)


@pytest.mark.servers
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


# --------------------------------------------------------------------------------- credentials

def _bcrypt_htpasswd(user: str, password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Python 3.11 still has it; the registry reads only bcrypt entries
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
    if not hashed or not hashed.startswith("$2"):
        pytest.fail("the C library's crypt() has no bcrypt")
    return f"{user}:{hashed}\n"


@pytest.fixture(scope="module")
def auth_registry(helm_env, tmp_path_factory):
    directory = tmp_path_factory.mktemp("auth-registry")
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(_bcrypt_htpasswd("ci", "s3cret-pass"))
    reg = start_registry(helm_env, directory / "server", REGISTRY_HTPASSWD=str(htpasswd))
    yield reg
    stop_registry(helm_env, reg)


@pytest.mark.servers
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


# ------------------------------------------------------------------------------------------- signing

@pytest.mark.servers
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


# ------------------------------------------------------------------------------ Artifact Hub metadata

CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}


def annotation(key: str):
    return load_yaml(CHART_META["annotations"][f"artifacthub.io/{key}"])


def canonical_image(ref: str) -> str:
    """docker.io/library/postgres:16-alpine for postgres:16-alpine, library/postgres:16-alpine, ..."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", ref
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = "docker.io"
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return f"{registry}/{path}"


def rendered_images(objects) -> set[str]:
    images = set()
    for obj in objects:
        if obj["kind"] == "CronJob":
            spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"):
            spec = pod_spec(obj)
        else:
            continue
        for key in ("containers", "initContainers", "ephemeralContainers"):
            images |= {c["image"] for c in spec.get(key, [])}
    return images


class TestArtifactHubMetadata:
    def test_images_annotation_lists_exactly_the_rendered_images(self, default_render):
        listed = {canonical_image(i["image"]) for i in annotation("images")}
        rendered = {canonical_image(i) for i in rendered_images(default_render)}
        assert listed == rendered, (f"listed but not deployed: {sorted(listed - rendered)}; "
                                    f"deployed but not listed: {sorted(rendered - listed)}")

    def test_images_are_named_and_pinned(self):
        images = annotation("images")
        assert len({i["name"] for i in images}) == len(images)
        for image in images:
            assert set(image) <= {"name", "image", "platforms", "whitelisted"}
            assert re.search(r":[\w][\w.-]*$|@sha256:[0-9a-f]{64}$", image["image"]), image
            assert not image["image"].endswith(":latest")

    def test_app_images_follow_app_version(self):
        for image in annotation("images"):
            if image["image"].startswith("agentforge/"):
                assert image["image"].endswith(f":{CHART_META['appVersion']}"), image

    def test_license_is_spdx(self):
        assert CHART_META["annotations"]["artifacthub.io/license"] == "Apache-2.0"

    def test_changes_are_well_formed(self):
        changes = annotation("changes")
        assert changes
        for change in changes:
            assert change["kind"] in CHANGE_KINDS, change
            assert isinstance(change["description"], str) and change["description"].strip()
            for link in change.get("links", []):
                assert link["url"].startswith("https://")

    def test_links_and_sources_are_https(self):
        for link in annotation("links"):
            assert link["name"] and link["url"].startswith("https://"), link
        assert CHART_META["sources"] and all(s.startswith("https://") for s in CHART_META["sources"])

    def test_packaged_chart_carries_the_metadata(self, tmp_path):
        proc = subprocess.run([HELM, "package", CHART, "--destination", tmp_path], capture_output=True, text=True,
                              timeout=TIMEOUT, check=True)
        tgz = Path(proc.stdout.strip().rsplit(" ", 1)[-1])
        with tarfile.open(tgz) as tar:
            meta = load_yaml(tar.extractfile(f"{CHART_META['name']}/Chart.yaml").read())
        assert meta["annotations"] == CHART_META["annotations"]
        assert meta["sources"] == CHART_META["sources"]


@pytest.mark.e2e
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
