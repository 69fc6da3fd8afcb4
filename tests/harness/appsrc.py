"""The AgentForge application source, laid out as its upstream images lay it out.

The source is a checkout of the application repository (AGENTFORGE_SRC, default ../shared/agentforge-src beside
this project). The chart README's table "Images the defaults target" names, for each component, the upstream
Dockerfile whose layout the chart's defaults assume; `image_for` reads that Dockerfile (its last stage's WORKDIR,
COPY and ENV instructions, and the .dockerignore of its build context) and lays the files out the same way under
.tools/app/, to be mounted read-only where the image has them. Each Python component's requirements.txt is
installed, by scripts/install-app.sh, into a virtualenv of its own (the backend and the collector pin different
httpx versions), constrained to the versions pinned in scripts/app-requirements/; the frontend is built there
with `npm ci` and `next build`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.pods import Image
from harness.render import CHART, ROOT, load_yaml

DEFAULT_SRC = ROOT.parent / "shared" / "agentforge-src"
APP_TOOLS = ROOT / ".tools" / "app"
INSTALL_SCRIPT = ROOT / "scripts" / "install-app.sh"
UPSTREAM = "https://github.com/Maroco0109/AgentForge"
VALUES_KEYS = {"backend": "backend", "data-collector": "dataCollector", "frontend": "frontend"}


class SourceMissing(RuntimeError):
    pass


def source_root() -> Path:
    root = Path(os.environ.get("AGENTFORGE_SRC") or DEFAULT_SRC).resolve()
    if not (root / "backend" / "gateway" / "main.py").is_file():
        raise SourceMissing(
            f"No AgentForge source at {root}. The app tier runs the application's own code: clone {UPSTREAM} "
            "(the commit named in its SNAPSHOT.md, or the one the chart's appVersion was built from) and point "
            "AGENTFORGE_SRC at the checkout, e.g. `AGENTFORGE_SRC=$HOME/AgentForge make test-app`.")
    return root


# -- which Dockerfile each component's defaults target (from the chart README) ----------------------------------

@dataclass(frozen=True)
class Target:
    component: str
    dockerfile: str  # path inside the source, e.g. docker/Dockerfile.backend
    context: str     # build context inside the source, e.g. backend
    uid: int


def documented_targets() -> dict[str, Target]:
    """The chart README's table of the upstream Dockerfiles the defaults target (one row per component)."""
    text = (CHART / "README.md").read_text()
    section = text.split("## Images the defaults target", 1)
    if len(section) != 2:
        raise AssertionError("charts/agentforge/README.md has no section 'Images the defaults target'")
    rows = {}
    for line in section[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[1].startswith("docker/Dockerfile"):
            rows[cells[0]] = Target(cells[0], cells[1], cells[2].rstrip("/"), int(cells[3]))
    return rows


# -- Dockerfile layout ----------------------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[str | None, list[str], str]] = field(default_factory=list)  # (from stage, sources, dest)
    user: str | None = None
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    runs: list[str] = field(default_factory=list)
    chown: str | None = None


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def parse_dockerfile(dockerfile: Path) -> list[Stage]:
    stages: list[Stage] = []
    for word, rest in _instructions(dockerfile):
        if word == "FROM":
            parts = rest.split()
            stages.append(Stage(name=parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))))
            continue
        if not stages:
            continue
        stage = stages[-1]
        if word == "WORKDIR":
            stage.workdir = os.path.normpath(os.path.join(stage.workdir, rest))
        elif word in ("ENV", "ARG"):
            target = stage.env if word == "ENV" else stage.args
            if "=" in rest.split()[0]:
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    target[key] = value
            else:
                key, _, value = rest.partition(" ")
                target[key] = value.strip()
        elif word == "COPY":
            parts = shlex.split(rest)
            source_stage = None
            while parts and parts[0].startswith("--"):
                flag = parts.pop(0)
                if flag.startswith("--from="):
                    source_stage = flag.split("=", 1)[1]
                if flag.startswith("--chown="):
                    stage.chown = flag.split("=", 1)[1]
            *sources, dest = parts
            is_dir = dest.endswith("/") or dest in (".", "./") or dest.endswith("/.")
            dest = os.path.normpath(os.path.join(stage.workdir, dest)) + ("/" if is_dir else "")
            stage.copies.append((source_stage, sources, dest))
        elif word == "USER":
            stage.user = rest
        elif word == "RUN":
            stage.runs.append(rest)
        elif word in ("ENTRYPOINT", "CMD"):
            argv = tuple(json.loads(rest)) if rest.startswith("[") else ("/bin/sh", "-c", rest)
            setattr(stage, word.lower(), argv)
    return stages


def image_user(dockerfile: str) -> tuple[int, int] | None:
    """(uid, gid) the image runs as and owns its files by: its USER's `adduser --uid` and the `addgroup --gid` of
    the group its COPY --chown names; None for an image that sets no USER (root)."""
    stage = parse_dockerfile(source_root() / dockerfile)[-1]
    if stage.user is None:
        return None
    script = " ".join(stage.runs)
    uid = re.search(rf"adduser\b[^&;]*--uid\s+(\d+)[^&;]*\b{re.escape(stage.user)}\b", script)
    group = (stage.chown or "").partition(":")[2]
    gid = re.search(rf"addgroup\b[^&;]*--gid\s+(\d+)\s+{re.escape(group)}\b", script) if group else None
    if not uid or not gid:
        raise AssertionError(f"{dockerfile}: cannot tell the uid of USER {stage.user} or the gid of group {group!r}")
    return int(uid.group(1)), int(gid.group(1))


def _ignored(patterns: list[str]) -> callable:
    def ignore(directory: str, names: list[str]) -> set[str]:
        return {n for n in names for p in patterns if fnmatch.fnmatch(n, p.rstrip("/"))}
    return ignore


def _copy(source: Path, dest: Path, ignore_patterns: list[str]) -> None:
    """Docker's COPY of one source: a folder's contents go into dest; a file goes into dest/ or becomes dest."""
    if source.is_dir():
        shutil.copytree(source, dest, ignore=_ignored(ignore_patterns), dirs_exist_ok=True,
                        copy_function=shutil.copy)
    else:
        target = dest / source.name if dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)


def lay_out(dockerfile: Path, context: Path, rootfs: Path, stage_outputs: dict[str, Path] | None = None) -> Stage:
    """Copy what the Dockerfile's last stage COPYs from its build context (or from an earlier stage, whose WORKDIR
    `stage_outputs` maps to a folder here, or to None when a virtualenv provides what it builds) into rootfs at the
    same paths. Returns the stage (its ENV, USER)."""
    stages = parse_dockerfile(dockerfile)
    final = stages[-1]
    ignore_file = context / ".dockerignore"
    patterns = [p.strip() for p in ignore_file.read_text().splitlines()
                if p.strip() and not p.startswith("#")] if ignore_file.exists() else []
    for source_stage, sources, dest in final.copies:
        for source in sources:
            if source_stage is None:
                origin = context / source
            else:
                earlier = next(s for s in stages if s.name == source_stage)
                if source_stage not in (stage_outputs or {}):
                    raise AssertionError(f"{dockerfile.name} copies from stage {source_stage}, which was not built")
                base = stage_outputs[source_stage]
                if base is None:  # what that stage builds is provided otherwise (a virtualenv)
                    continue
                origin = base / os.path.relpath(os.path.normpath(os.path.join(earlier.workdir, source)),
                                                earlier.workdir)
            target = rootfs / dest.lstrip("/")
            if not origin.exists():
                raise FileNotFoundError(f"{dockerfile.name}: COPY {source} {dest}: {origin} does not exist")
            if source.endswith("/") or dest.endswith("/") or origin.is_dir() or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
            _copy(origin, target, patterns)
    (rootfs / final.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return final


def _tree_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            digest.update(str(f.relative_to(path.parent)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


# -- installed environments (scripts/install-app.sh) --------------------------------------------------------

def install_dir(component: str) -> Path:
    return APP_TOOLS / component


def ensure_installed() -> None:
    """Run scripts/install-app.sh (a no-op when its stamps match the source and the pins)."""
    proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], env={**os.environ, "AGENTFORGE_SRC": str(source_root())},
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise AssertionError(f"scripts/install-app.sh failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


def _rootfs(key: str, dockerfile: Path, context: Path, stage_outputs: dict[str, Path] | None = None) -> Path:
    """The image's folders laid out once under .tools/app/rootfs/<key> (pytest-xdist workers may race: the first
    rename wins)."""
    rootfs = APP_TOOLS / "rootfs" / key
    prefix = key.rsplit("-", 1)[0] + "-"
    for old in rootfs.parent.glob(prefix + "*"):  # layouts of an earlier source or Dockerfile
        if old != rootfs and not old.name.endswith(".tmp") and old.name.count("-") == key.count("-"):
            shutil.rmtree(old, ignore_errors=True)
    if not rootfs.exists():
        staging = rootfs.with_name(f"{key}.{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        lay_out(dockerfile, context, staging, stage_outputs)
        try:
            staging.rename(rootfs)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return rootfs


def default_repository(values_key: str) -> str:
    """The image repository the chart's values.yaml gives a component by default."""
    return load_yaml((CHART / "values.yaml").read_text())[values_key]["image"]["repository"]


def _image(repository: str, rootfs: Path, stage: Stage, path: Path, extra: dict[str, Path]) -> Image:
    mounts = {f"/{top.name}": top for top in rootfs.iterdir()} | extra
    return Image(repository=repository, mounts=mounts, path=(str(path),), env=dict(stage.env),
                 entrypoint=stage.entrypoint, cmd=stage.cmd, workdir=stage.workdir)


def tool_image(values_key: str) -> Image:
    """PostgreSQL's or Redis' image, for the wait containers that run its client: this machine's pg_isready and
    redis-cli (Debian's, of the same major versions) stand in for the image's."""
    return Image(repository=default_repository(values_key), mounts={})


def python_image(component: str, dockerfile: str | None = None) -> Image:
    """The image of a Python component: the layout of its documented Dockerfile (or of `dockerfile`), and its
    virtualenv standing in for the base image's /usr/local (first on PATH, like /usr/local/bin there)."""
    src = source_root()
    target = documented_targets()[component]
    dockerfile_path = src / (dockerfile or target.dockerfile)
    venv = install_dir(target.context).resolve()  # its scripts name their interpreter by the real path
    # A multi-stage Dockerfile's `builder` installs the requirements: the virtualenv stands in for it.
    rootfs = _rootfs(f"{dockerfile_path.name}-{_tree_hash(src / target.context, dockerfile_path)}", dockerfile_path,
                     src / target.context, {"builder": None})
    python_home = Path(os.path.realpath(venv / "bin" / "python")).parents[1]
    return _image(default_repository(VALUES_KEYS[component]), rootfs, parse_dockerfile(dockerfile_path)[-1],
                  venv / "bin", {str(venv): venv, str(python_home): python_home})


def frontend_image() -> Image:
    """The frontend's runtime stage: the standalone server, its static files and public/ from the build."""
    src = source_root()
    target = documented_targets()["frontend"]
    build = install_dir("frontend") / "build"
    key = (install_dir("frontend") / ".installed").read_text().strip()
    rootfs = _rootfs(f"frontend-{key}", src / target.dockerfile, src / target.context, {"builder": build})
    node = Path(os.path.realpath(shutil.which("node") or "/usr/bin/node"))
    extra = {} if str(node).startswith(("/usr/", "/bin/")) else {str(node.parent): node.parent}
    return _image(default_repository("frontend"), rootfs, parse_dockerfile(src / target.dockerfile)[-1], node.parent,
                  extra)


def head_revisions() -> set[str]:
    """The code's head revision(s): revisions that no other migration names as its down_revision."""
    revisions, downs = set(), set()
    for path in source_root().joinpath("backend", "alembic", "versions").glob("*.py"):
        text = path.read_text()
        match = re.search(r'^revision\s*(?::\s*str\s*)?=\s*["\']([^"\']+)', text, re.M)
        if match:
            revisions.add(match.group(1))
            downs.update(re.findall(r'["\']([^"\']+)["\']',
                                    re.search(r"^down_revision.*$", text, re.M).group(0).split("=", 1)[1]))
    return revisions - downs


# Run with the backend's own settings and HTTP client: DATA_COLLECTOR_URL, a collection created, then read back 30
# times on new connections, 10 at a time. Prints {"base": ..., "codes": [...]}.
COLLECTOR_READS = """
import json
from concurrent.futures import ThreadPoolExecutor
import httpx
from backend.shared.config import settings
base = settings.DATA_COLLECTOR_URL.rstrip("/")
with httpx.Client(timeout=10) as client:
    created = client.post(f"{base}/api/v1/collections", json={"source_type": "file"})
    created.raise_for_status()
collection = created.json()["id"]
def read(_):
    with httpx.Client(timeout=10) as client:  # a new connection for every read
        return client.get(f"{base}/api/v1/collections/{collection}/status").status_code
with ThreadPoolExecutor(10) as pool:
    codes = list(pool.map(read, range(30)))
print(json.dumps({"base": base, "codes": codes}))
"""
