"""The images `make images` builds (scripts/images/build.sh), read from their OCI archives in .tools/images/out/: each
is named by its .ref, its config keeps the contract the chart relies on (the upstream Dockerfiles' ENV, WORKDIR,
ENTRYPOINT, CMD and USER, read from the Dockerfiles themselves; the stand-ins' users, entrypoints and tools), the
code is where the chart's defaults expect it, the tags follow the images' inputs, and values.yaml makes the chart
render exactly the built references. The session fixture runs build.sh, which builds only what is out of date."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from functools import cache
from pathlib import Path

import pytest

from harness import appsrc
from harness.objects import container
from harness.render import ROOT, load_yaml, render_chart
from harness.values import deep_merge

BUILD_SH = ROOT / "scripts" / "images" / "build.sh"
OUT = ROOT / ".tools" / "images" / "out"
IMAGES = ["pause", "coredns", "postgres", "redis", "postgres-exporter", "redis-exporter", "prometheus", "backend",
          "data-collector", "frontend"]
# The data stores' exporters: image, the values key their reference lands at, the binary and port.
EXPORTERS = {"postgres-exporter": ("postgresql", "/bin/postgres_exporter", 9187),
             "redis-exporter": ("redis", "/redis_exporter", 9121)}
APP_DOCKERFILES = {"backend": "docker/Dockerfile.backend", "data-collector": "docker/Dockerfile.collector",
                   "frontend": "docker/Dockerfile.frontend.prod"}
COMPONENTS = {"backend": "backend", "data-collector": "dataCollector", "frontend": "frontend",
              "postgres": "postgresql", "redis": "redis", "prometheus": "prometheus"}


def build_sh(*args: str, env: dict | None = None, timeout: int = 3600) -> str:
    proc = subprocess.run(["bash", str(BUILD_SH), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"build.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module", autouse=True)
def built():
    """Every image up to date (the real tier's harness runs the same command first)."""
    build_sh()


def tags(*names: str, env: dict | None = None) -> dict[str, str]:
    """The tags build.sh gives the named images for the current inputs (nothing is built)."""
    out = build_sh("tag", *names, env=env, timeout=120)
    return dict(line.split() for line in out.splitlines() if line and not line.startswith("["))


# -- reading an OCI archive --------------------------------------------------------------------------------------

class Archive:
    def __init__(self, path: Path):
        self.path = path
        with tarfile.open(path) as tar:
            self.blobs = {m.name: m for m in tar.getmembers()}
            self.index = json.load(tar.extractfile("index.json"))
            (entry,) = self.index["manifests"]
            self.ref_name = entry.get("annotations", {}).get("org.opencontainers.image.ref.name")
            self.manifest = self._json(tar, entry["digest"])
            self.image_config = self._json(tar, self.manifest["config"]["digest"])

    @staticmethod
    def _json(tar, digest: str) -> dict:
        return json.load(tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1]))

    @property
    def config(self) -> dict:
        return self.image_config.get("config", {})

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [])

    @cache  # noqa: B019 (one Archive per image, kept for the session)
    def files(self) -> dict[str, tarfile.TarInfo]:
        """The image's filesystem: every layer applied in order, whiteouts included (path without leading /)."""
        fs: dict[str, tarfile.TarInfo] = {}
        with tarfile.open(self.path) as outer:
            for layer in self.manifest["layers"]:
                blob = outer.extractfile("blobs/sha256/" + layer["digest"].split(":", 1)[1])
                mode = "r|gz" if layer["mediaType"].endswith("gzip") else "r|"
                with tarfile.open(fileobj=blob, mode=mode) as tar:
                    for member in tar:
                        name = os.path.normpath(member.name).lstrip("./").lstrip("/")
                        base = os.path.basename(name)
                        if base == ".wh..wh..opq":
                            parent = os.path.dirname(name)
                            fs = {k: v for k, v in fs.items() if not k.startswith(parent + "/")}
                        elif base.startswith(".wh."):
                            gone = os.path.join(os.path.dirname(name), base[4:])
                            fs = {k: v for k, v in fs.items() if k != gone and not k.startswith(gone + "/")}
                        else:
                            fs[name] = member
        return fs

    def read(self, path: str) -> bytes:
        """A regular file's content (searched from the top layer down)."""
        path = path.lstrip("/")
        with tarfile.open(self.path) as outer:
            for layer in reversed(self.manifest["layers"]):
                blob = outer.extractfile("blobs/sha256/" + layer["digest"].split(":", 1)[1])
                mode = "r|gz" if layer["mediaType"].endswith("gzip") else "r|"
                with tarfile.open(fileobj=blob, mode=mode) as tar:
                    for member in tar:
                        if os.path.normpath(member.name).lstrip("./").lstrip("/") == path and member.isfile():
                            return tar.extractfile(member).read()
        raise FileNotFoundError(path)

    def lookup(self, path: str) -> tarfile.TarInfo | None:
        """The entry at an absolute path, following symbolic links inside the image (/var/run -> /run)."""
        files = self.files()
        resolved = ""
        parts = path.strip("/").split("/")
        hops = 0
        while parts:
            candidate = os.path.join(resolved, parts.pop(0))
            member = files.get(candidate)
            if member is not None and member.issym() and hops < 20:
                hops += 1
                target = member.linkname
                base = "" if target.startswith("/") else resolved
                parts = os.path.normpath(os.path.join(base, target)).strip("/").split("/") + parts
                resolved = ""
                continue
            resolved = candidate
        return files.get(resolved)

    def which(self, command: str) -> str | None:
        """Where PATH finds an executable command."""
        for folder in self.env.get("PATH", "").split(":"):
            member = self.lookup(os.path.join(folder, command))
            if member is not None and (member.isfile() or member.islnk()) and member.mode & 0o111:
                return os.path.join(folder, command)
        return None


@cache
def archive(name: str) -> Archive:
    return Archive(OUT / f"{name}.tar")


def ref(name: str) -> str:
    return (OUT / f"{name}.ref").read_text().strip()


def passwd(image: Archive, file: str = "etc/passwd") -> dict[str, tuple[int, int]]:
    entries = {}
    for line in image.read(file).decode().splitlines():
        fields = line.split(":")
        entries[fields[0]] = (int(fields[2]), int(fields[3]))
    return entries


def upstream_stage(name: str) -> appsrc.Stage:
    return appsrc.parse_dockerfile(appsrc.source_root() / APP_DOCKERFILES[name])[-1]


# -- every image ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGES)
def test_archive_is_named_by_its_ref_and_its_tag_is_current(name):
    """ctr imports an OCI archive under its index's ref.name: it must be the .ref, whose tag is what build.sh computes
    from the current inputs (a stale archive would be loaded under a tag the inputs no longer give)."""
    reference = ref(name)
    assert re.fullmatch(rf"localhost/agentforge/{name}:[0-9a-f]{{12}}", reference), reference
    assert archive(name).ref_name == reference
    assert reference.rsplit(":", 1)[1] == tags(name)[name]
    assert archive(name).image_config["os"] == "linux" and archive(name).image_config["architecture"] == "amd64"


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is installed by build.sh")
@pytest.mark.parametrize("name", ["pause", "backend"])
def test_skopeo_reads_the_archive(name):
    out = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{OUT / f'{name}.tar'}"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert json.loads(out)["config"] == archive(name).config


def test_values_point_every_component_at_its_built_image():
    """values.yaml, rendered: each component's container (the backend's also in the migration Job and the helm test
    pod) runs exactly the built reference, with pull policy IfNotPresent."""
    values = load_yaml((OUT / "values.yaml").read_text())
    assert set(values) == set(COMPONENTS.values())
    rendered = render_chart(values)
    images: dict[str, set[str]] = {}
    for obj in rendered:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}).get("spec") or (spec if obj.get("kind") == "Pod" else None)
        if not pod:
            continue
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            images.setdefault(c["image"], set()).add(f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}")
            if c["image"].startswith("localhost/"):
                assert c.get("imagePullPolicy") == "IfNotPresent", c["name"]
    for name in COMPONENTS:
        assert ref(name) in images, f"no container runs {ref(name)}"
    backend_users = images[ref("backend")]
    assert any(u.startswith("Job/") for u in backend_users), backend_users
    assert any(u.startswith("Pod/") for u in backend_users), backend_users
    # The exporters' references land under <component>.metrics.image: with the exporters on, their sidecars run them.
    metrics_on = {key: {"metrics": {"enabled": True}} for key, _, _ in EXPORTERS.values()}
    rendered = render_chart(deep_merge(values, metrics_on))
    for name, (key, _, _) in EXPORTERS.items():
        sidecar = container(rendered.get("StatefulSet", f"agentforge-{key}"), "metrics")
        assert (sidecar["image"], sidecar["imagePullPolicy"]) == (ref(name), "IfNotPresent")


@pytest.mark.parametrize("name", EXPORTERS)
def test_exporter_image_runs_its_static_binary_as_non_root(name):
    _, binary, port = EXPORTERS[name]
    config = archive(name).config
    assert config["Entrypoint"] == [binary] and not config.get("Cmd")
    assert config["User"] == "65532:65532"
    assert set(config["ExposedPorts"]) == {f"{port}/tcp"}
    files = {path for path, member in archive(name).files().items() if not member.isdir()}
    assert files == {binary.lstrip("/"), "etc/passwd", "etc/group"}


# -- the app images: the upstream Dockerfiles' contract ---------------------------------------------------------

@pytest.mark.parametrize("name", list(APP_DOCKERFILES))
def test_app_image_config_is_the_upstream_dockerfiles(name):
    stage = upstream_stage(name)
    config = archive(name).config
    env = archive(name).env
    for key, value in stage.env.items():
        assert env.get(key) == value, f"ENV {key}"
    assert config.get("WorkingDir") == stage.workdir
    if stage.entrypoint:
        assert tuple(config.get("Entrypoint") or ()) == stage.entrypoint
        # ENTRYPOINT without CMD clears the base image's CMD (Docker's rule).
        assert tuple(config.get("Cmd") or ()) == stage.cmd
    else:
        assert tuple(config.get("Cmd") or ()) == stage.cmd
    assert (config.get("User") or None) == stage.user
    exposed = re.findall(r"^EXPOSE\s+(\d+)", (appsrc.source_root() / APP_DOCKERFILES[name]).read_text(), re.M)
    assert set(config.get("ExposedPorts", {})) == {f"{port}/tcp" for port in exposed}


def test_frontend_keeps_the_node_images_entrypoint():
    """The frontend Dockerfile sets CMD only: node:20-alpine's docker-entrypoint.sh stays its ENTRYPOINT."""
    frontend = archive("frontend")
    assert frontend.config.get("Entrypoint") == ["docker-entrypoint.sh"]
    assert frontend.which("docker-entrypoint.sh") == "/usr/local/bin/docker-entrypoint.sh"
    assert frontend.which("node") and frontend.env["NODE_VERSION"].startswith("20.")


@pytest.mark.parametrize("name,module", [("backend", "app/backend/gateway/main.py"),
                                         ("data-collector", "src/data_collector/main.py")])
def test_python_code_is_where_the_chart_runs_it(name, module):
    files = archive(name).files()
    assert module in files
    assert f"{os.path.dirname(module)}/__init__.py" in files or name == "backend"
    python = archive(name).which("python3")
    assert python, "no python3 on PATH"
    version = tuple(int(p) for p in archive(name).env["PYTHON_VERSION"].split("."))
    assert (3, 11, 5) <= version < (3, 12), version
    # Nothing of the build's configuration (CA bundle mount, pip config) is left in the image.
    assert not any(p.startswith(("etc/pip", "root/.config")) for p in files)


def test_backend_entrypoint_is_executable():
    member = archive("backend").files()["app/backend/entrypoint.sh"]
    assert member.mode & 0o111


def test_python_packages_are_the_tested_pins():
    """pip ran with scripts/app-requirements/ as constraints: the installed versions are the pinned ones."""
    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    for name in ("backend", "data-collector"):
        installed = {}
        for path in archive(name).files():
            if path.startswith("usr/local/lib/python3.11/site-packages/") and path.endswith(".dist-info/METADATA"):
                # {name}-{version}.dist-info, the name's own dashes written as underscores.
                package, version = path.split("/")[-2].removesuffix(".dist-info").split("-", 1)
                installed[normal(package)] = version
        pinned = dict(line.split("==") for line in
                      (ROOT / "scripts" / "app-requirements" / f"{name}.txt").read_text().splitlines()
                      if line and not line.startswith("#"))
        assert {normal(k): v for k, v in pinned.items()}.items() <= installed.items(), name


def test_frontend_has_the_standalone_server_and_its_assets():
    files = archive("frontend").files()
    assert files["app/server.js"].uid == 1001
    assert any(p.startswith("app/.next/static/") and files[p].isfile() for p in files)
    assert "app/public" in files
    assert passwd(archive("frontend"))["nextjs"][0] == 1001


def test_frontend_tag_follows_its_build_args():
    """NEXT_PUBLIC_* are baked in at build time: another value is another image. The upstream Dockerfile's ARG
    defaults, given explicitly, are the default build."""
    text = (appsrc.source_root() / APP_DOCKERFILES["frontend"]).read_text()
    defaults = dict(re.findall(r"^ARG (NEXT_PUBLIC_\w+)=(\S+)", text, re.M))
    assert set(defaults) == {"NEXT_PUBLIC_API_URL", "NEXT_PUBLIC_WS_URL"}
    unset = {key: "" for key in defaults}
    default = tags("frontend", env=unset)["frontend"]
    assert tags("frontend", env=defaults)["frontend"] == default
    other = tags("frontend", env={**defaults, "NEXT_PUBLIC_API_URL": "https://agentforge.example.com"})
    assert other["frontend"] != default
    assert tags("frontend", env={**defaults, "NEXT_PUBLIC_WS_URL": "wss://agentforge.example.com"})["frontend"] \
        not in (default, other["frontend"])


def test_tags_follow_the_source(tmp_path):
    """A changed file of the backend's source changes the backend's tag and no other image's."""
    src = appsrc.source_root()
    copy = tmp_path / "src"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("node_modules", ".next", "__pycache__"))
    names = ["backend", "data-collector", "frontend", "postgres"]
    before = tags(*names, env={"AGENTFORGE_SRC": str(copy)})
    assert before == tags(*names, env={"AGENTFORGE_SRC": str(src)})
    main = copy / "backend" / "gateway" / "main.py"
    main.chmod(0o644)
    main.write_text(main.read_text() + "\n# changed\n")
    after = tags(*names, env={"AGENTFORGE_SRC": str(copy)})
    assert after["backend"] != before["backend"]
    assert {k: v for k, v in after.items() if k != "backend"} == {k: v for k, v in before.items() if k != "backend"}


# -- the stand-ins ------------------------------------------------------------------------------------------------

def test_pause():
    pause = archive("pause")
    assert pause.config["Entrypoint"] == ["/pause"] and pause.config["User"] == "65535:65535"
    assert set(pause.files()) == {"pause"}


def test_coredns_runs_as_non_root_and_may_bind_port_53():
    coredns = archive("coredns")
    assert coredns.config["Entrypoint"] == ["/coredns"]
    assert coredns.config["User"] == "65532:65532"
    member = coredns.files()["coredns"]
    # cap_net_bind_service in the file's capability set, as upstream's setcap leaves it.
    capability = member.pax_headers.get("SCHILY.xattr.security.capability")
    assert capability, "no file capability on /coredns"
    raw = capability.encode("latin-1") if isinstance(capability, str) else capability
    permitted = int.from_bytes(raw[4:8], "little")
    assert permitted & (1 << 10), "cap_net_bind_service (10) missing"


def test_postgres_keeps_the_official_contract():
    postgres = archive("postgres")
    assert postgres.config["Entrypoint"] == ["docker-entrypoint.sh"] and postgres.config["Cmd"] == ["postgres"]
    assert postgres.which("docker-entrypoint.sh") == "/usr/local/bin/docker-entrypoint.sh"
    assert passwd(postgres)["postgres"] == (70, 70)
    assert postgres.env["PGDATA"] == "/var/lib/postgresql/data"
    for tool in ("postgres", "pg_ctl", "initdb", "pg_isready", "psql", "sh"):
        assert postgres.which(tool), f"{tool} is not on PATH"
    run = postgres.lookup("/var/run/postgresql")
    assert (run.uid, run.gid) == (70, 70)
    sample = postgres.read("usr/share/postgresql/15/postgresql.conf.sample").decode()
    assert re.search(r"^listen_addresses = '\*'", sample, re.M)
    entrypoint = postgres.read("usr/local/bin/docker-entrypoint.sh").decode()
    assert "--pwfile=" in entrypoint and "host all all all" in entrypoint


def test_redis_keeps_the_official_contract():
    redis = archive("redis")
    assert redis.config["Entrypoint"] == ["docker-entrypoint.sh"] and redis.config["Cmd"] == ["redis-server"]
    assert redis.config["WorkingDir"] == "/data"
    users = passwd(redis)
    assert users["redis"] == (999, 1000)
    data = redis.files()["data"]
    assert (data.uid, data.gid) == (999, 1000)
    for tool in ("redis-server", "redis-cli", "sh", "od", "tr", "sed", "grep", "docker-entrypoint.sh"):
        assert redis.which(tool), f"{tool} is not on PATH"


def test_prometheus_keeps_the_official_layout():
    """/bin/prometheus as ENTRYPOINT with upstream's CMD, the config and data folders the chart mounts, nobody."""
    prometheus = archive("prometheus")
    assert prometheus.config["Entrypoint"] == ["/bin/prometheus"]
    assert prometheus.config["Cmd"] == ["--config.file=/etc/prometheus/prometheus.yml",
                                        "--storage.tsdb.path=/prometheus"]
    assert prometheus.config["User"] == "65534:65534"
    assert prometheus.config["WorkingDir"] == "/prometheus"
    files = prometheus.files()
    for path in ("bin/prometheus", "bin/promtool", "etc/prometheus/prometheus.yml"):
        assert files[path].isfile(), path
    assert files["prometheus"].uid == 65534


def test_ctr_imports_the_archives(tmp_path):
    """The node loads these archives with `ctr images import`: a containerd of the test's own (its own root, state
    and socket) imports two of them under their refs."""
    ctr, containerd = ROOT / ".tools" / "bin" / "ctr", ROOT / ".tools" / "bin" / "containerd"
    if not (ctr.exists() and containerd.exists()):
        pytest.skip("containerd is built by scripts/kube/node.sh")
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(f'version = 3\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
                      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"]\n'
                      f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n')
    with open(tmp_path / "containerd.log", "w") as log:
        daemon = subprocess.Popen([str(containerd), "--config", str(config)], stdout=log, stderr=log)
    try:
        for _ in range(100):
            if socket.exists() or daemon.poll() is not None:
                break
            time.sleep(0.1)
        assert socket.exists(), (tmp_path / "containerd.log").read_text()
        base = [str(ctr), "--address", str(socket), "--namespace", "k8s.io"]
        for name in ("pause", "coredns"):
            subprocess.run([*base, "images", "import", str(OUT / f"{name}.tar")], check=True, capture_output=True,
                           timeout=300)
        listed = subprocess.run([*base, "images", "ls", "-q"], check=True, capture_output=True, text=True).stdout
        assert {ref("pause"), ref("coredns")} <= set(listed.split())
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
