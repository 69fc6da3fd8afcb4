"""The backup CronJob as rendered (its pod, script and claim check), and its script run for real: under Debian's
shell and tools or busybox's, against a real PostgreSQL, and the chart README's restore procedure."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.render import CHART, ROOT

NAME = "agentforge-backup"


BACKUP = {"backup": {"enabled": True}}


DUMP_NAME = re.compile(r"^agentforge-\d{8}T\d{6}Z\.dump$")


README = CHART / "README.md"


def cronjob(objects) -> dict:
    return objects.get("CronJob", NAME)


def job_spec(objects) -> dict:
    return cronjob(objects)["spec"]["jobTemplate"]["spec"]


def pod(objects) -> dict:
    return job_spec(objects)["template"]


def backup_container(objects) -> dict:
    (c,) = pod(objects)["spec"]["containers"]
    assert c["name"] == "backup"
    return c


def script(objects) -> str:
    """The shell script the container runs: `sh -c SCRIPT`, nothing else on its command line."""
    c = backup_container(objects)
    assert c["command"][:2] == ["sh", "-c"] and len(c["command"]) == 3 and "args" not in c, c["command"]
    return c["command"][2]


def env(objects) -> dict[str, dict]:
    return {e["name"]: e for e in backup_container(objects)["env"]}


def check_job(objects) -> dict:
    (job,) = [o for o in objects.of_kind("Job") if o["metadata"]["name"].startswith(f"{NAME}-check-")]
    return job


BUSYBOX_APPLETS = ("sh", "find", "date", "sleep", "rm", "sync", "mv", "wc", "ls", "grep", "sort", "tail", "cat",
                   "id")


def busybox_bin(base: Path) -> Path:
    """A folder of busybox's applets (the alpine image's shell and tools), the only tools on PATH beside PostgreSQL's
    own."""
    if not shutil.which("busybox"):
        subprocess.run(["bash", str(ROOT / "scripts" / "install-test-servers.sh")], check=False, timeout=600)
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.fail("busybox missing: run scripts/install-test-servers.sh")
    folder = base / "busybox-bin"
    folder.mkdir(exist_ok=True)
    for applet in BUSYBOX_APPLETS:
        if not (folder / applet).exists():
            (folder / applet).symlink_to(busybox)
    return folder


class Runner:
    """The rendered backup container's script, run by a shell of this machine with the rendered environment (the
    Secret's keys resolved) in which only the database's host and port and the claim's folder are replaced."""

    def __init__(self, objects, binaries: dict, shell: str, base: Path):
        from harness.podenv import ObjectStore, resolve_env

        self.script = script(objects)
        self.env = resolve_env(ObjectStore(objects), cronjob(objects), backup_container(objects))
        if shell == "busybox":
            folder = busybox_bin(base)
            self.shell, self.path = str(folder / "sh"), f"{folder}:{binaries['pg']}"
        else:
            self.shell, self.path = "/bin/sh", binaries["PATH"]

    def environment(self, server, folder: Path, **override: str) -> dict[str, str]:
        return {**self.env, "PATH": self.path, "LANG": "C.UTF-8", "PGHOST": "127.0.0.1", "PGPORT": str(server.port),
                "BACKUP_DIR": str(folder), **override}

    def popen(self, server, folder: Path, **override: str) -> subprocess.Popen:
        return subprocess.Popen([self.shell, "-c", self.script], env=self.environment(server, folder, **override),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, server, folder: Path, **override: str) -> subprocess.CompletedProcess:
        proc = self.popen(server, folder, **override)
        out, err = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def readme_restore_command() -> str:
    """The pg_restore command of the chart README's restore step, as the reader pod's shell runs it."""
    found = re.findall(r"exec agentforge-backup-reader -- sh -c '(pg_restore [^']*/backups/<dump>)'",
                       README.read_text())
    assert len(found) == 1, found
    assert "--clean --if-exists --no-owner" in found[0], found[0]
    return found[0]


def restore(runner: Runner, server, dump: Path) -> subprocess.CompletedProcess:
    """The README's restore command, with the reader pod's environment (the CronJob's), from `dump`."""
    command = readme_restore_command().replace("/backups/<dump>", str(dump))
    return subprocess.run([runner.shell, "-c", command], env=runner.environment(server, dump.parent),
                          capture_output=True, text=True, timeout=600)


def dumps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if DUMP_NAME.match(p.name))


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


RETENTION = 3


# Rows of filler text (128 hex characters each, which compress about as text does): a database of some size, for the
# timings.
FILLER_ROWS = 300_000




async def _connect(server, database: str | None = None):
    import asyncpg

    return await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                                 database=database or server.database, timeout=10)


async def _execute(server, sql: str, database: str | None = None) -> None:
    conn = await _connect(server, database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetchval(server, sql: str, database: str | None = None):
    conn = await _connect(server, database)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()
