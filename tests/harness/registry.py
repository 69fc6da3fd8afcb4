"""The distribution machinery the servers and e2e tiers share: a local OCI registry (scripts/registry.sh), a helm
environment of its own, a published chart, a GnuPG signing key, and ci/check_version.py. Its fixtures are
registered for every tier by tests/real/conftest.py (pytest_plugins)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.render import CHART, HELM, ROOT, TOOLS_BIN

REGISTRY_BIN = TOOLS_BIN / "registry"


TIMEOUT = 120  # seconds, for any one command


CHART_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


PROV_MEDIA_TYPE = "application/vnd.cncf.helm.chart.provenance.v1.prov"


DIGEST = re.compile(r"^Digest: (sha256:[0-9a-f]{64})$", re.M)


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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


def _load_check_version():
    spec = importlib.util.spec_from_file_location("check_version", ROOT / "ci" / "check_version.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_version = _load_check_version()
