"""The backup script the CronJob runs, under Debian's and busybox's shells, against a real PostgreSQL: a hostile
password, retention, failures that leave nothing partial, the claim check, and the README's restore."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.backup import (
    FILLER_ROWS,
    RETENTION,
    Runner,
    _connect,
    _execute,
    _fetchval,
    check_job,
    dumps,
    partials,
    restore,
)
from harness.render import render_chart
from harness.values import deep_merge


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A real PostgreSQL with the rendered bundled server's user, password (full of characters that break URLs and
    shells) and database, holding a table of filler rows; and the render (retention 3)."""
    from harness import servers
    from harness.appstack import scenario_values

    objects = render_chart(deep_merge(scenario_values("default"), {"backup": {"enabled": True,
                                                                              "retention": RETENTION}}))
    rendered = servers.rendered_servers(objects)
    binaries = servers.binaries()
    server = servers.start_postgres(binaries, rendered["secret"]["POSTGRES_USER"],
                                    rendered["secret"]["POSTGRES_PASSWORD"], "agentforge")
    try:
        asyncio.run(_execute(server, "CREATE TABLE filler AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || "
                                     f"md5((g * 13)::text) || md5((g * 31)::text) AS body "
                                     f"FROM generate_series(1, {FILLER_ROWS}) g; "
                                     "ALTER TABLE filler ADD PRIMARY KEY (id)"))
        yield {"objects": objects, "binaries": binaries, "server": server, "base": tmp_path_factory.mktemp("backup")}
    finally:
        server.stop()


@pytest.mark.parametrize("shell", ["debian", "busybox"])
class TestAgainstARealServer:
    def test_the_password_is_hostile(self, database, shell):
        from harness.appstack import HOSTILE_PASSWORD

        assert database["server"].password == HOSTILE_PASSWORD

    def test_retention_keeps_the_newest(self, database, shell, record_property):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"retention-{shell}"
        folder.mkdir()
        # Files of the claim that are not dumps of the chart's, never touched.
        (folder / "notes.txt").write_text("keep me\n")
        (folder / "agentforge-manual.dump").write_bytes(b"mine")
        made = []
        for _ in range(RETENTION + 2):
            started = time.monotonic()
            done = runner.run(database["server"], folder)
            seconds = time.monotonic() - started
            assert done.returncode == 0, done.stderr
            made.append(re.search(r"into (agentforge-\S+\.dump):", done.stdout).group(1))
        assert dumps(folder) == sorted(made[-RETENTION:])
        assert (folder / "notes.txt").exists() and (folder / "agentforge-manual.dump").exists()
        assert partials(folder) == []
        assert f"deleted {made[1]} (backup.retention: {RETENTION})" in done.stdout
        size = (folder / made[-1]).stat().st_size
        record_property(f"timing: backup ({shell}): pg_dump of {FILLER_ROWS} rows "
                        f"({asyncio.run(_table_mib(database['server'])):.0f} MiB table), dump "
                        f"{size / 2**20:.1f} MiB, s", round(seconds, 2))

    def test_a_failed_dump_deletes_nothing_and_leaves_no_partial(self, database, shell):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"failed-{shell}"
        folder.mkdir()
        for _ in range(RETENTION):
            assert runner.run(database["server"], folder).returncode == 0
        before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        wrong = runner.run(database["server"], folder, PGPASSWORD="wrong")
        assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr
        # Nothing answers: the script waits (here 4 s of its rendered BACKUP_WAIT_SECONDS), then pg_dump fails.
        unreachable = runner.run(database["server"], folder, PGPORT="1", BACKUP_WAIT_SECONDS="4")
        assert unreachable.returncode != 0 and "waiting for 127.0.0.1:1 to answer" in unreachable.stdout
        assert "connection to server" in unreachable.stderr
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
        assert "deleted" not in wrong.stdout + unreachable.stdout

    def test_a_stopped_dump_removes_its_partial_file(self, database, shell):
        """SIGTERM (the Job's deadline, an eviction) while pg_dump waits: the shell stops it and removes the partial
        file it had opened; the older dumps stay."""
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"stopped-{shell}"
        folder.mkdir()
        assert runner.run(database["server"], folder).returncode == 0
        before = dumps(folder)
        code, stderr = asyncio.run(_dump_stopped_while_locked(database["server"], runner, folder))
        assert code == 143, stderr
        assert dumps(folder) == before and partials(folder) == []
        still = subprocess.run(["pgrep", "-f", "--", f"--file={folder}/"], capture_output=True, text=True).stdout
        assert not still.split(), "pg_dump still runs"

    def test_the_claim_check_writes_and_leaves_nothing(self, database, shell):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"check-{shell}"
        folder.mkdir()
        (c,) = check_job(database["objects"])["spec"]["template"]["spec"]["containers"]
        assert c["command"][:2] == ["sh", "-c"]
        done = subprocess.run([runner.shell, "-c", c["command"][2]], capture_output=True, text=True, timeout=60,
                              env={"PATH": runner.path, "BACKUP_DIR": str(folder)})
        assert done.returncode == 0 and "the backup claim is writable" in done.stdout, done.stderr
        assert list(folder.iterdir()) == []
        missing = subprocess.run([runner.shell, "-c", c["command"][2]], capture_output=True, text=True, timeout=60,
                                 env={"PATH": runner.path, "BACKUP_DIR": str(folder / "not-mounted")})
        assert missing.returncode != 0, "a claim it cannot write to fails the Job"

    def test_a_partial_file_older_than_the_deadline_is_removed(self, database, shell):
        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"stale-{shell}"
        folder.mkdir()
        stale = folder / ".agentforge-20000101T000000Z.dump.partial"
        live = folder / ".agentforge-29990101T000000Z.dump.partial"
        for path in (stale, live):
            path.write_bytes(b"partial")
        minutes = int(runner.env["BACKUP_STALE_MINUTES"])
        old = time.time() - (minutes + 2) * 60
        os.utime(stale, (old, old))
        assert runner.run(database["server"], folder).returncode == 0
        assert not stale.exists() and live.exists()

    def test_the_readme_restore_brings_the_data_into_a_fresh_server(self, database, shell, record_property):
        from harness import servers

        runner = Runner(database["objects"], database["binaries"], shell, database["base"])
        folder = database["base"] / f"restore-{shell}"
        folder.mkdir()
        done = runner.run(database["server"], folder)
        assert done.returncode == 0, done.stderr
        (dump,) = dumps(folder)
        source = database["server"]
        fresh = servers.start_postgres(database["binaries"], source.user, source.password, source.database)
        try:
            started = time.monotonic()
            restored = restore(runner, fresh, folder / dump)
            seconds = time.monotonic() - started
            assert restored.returncode == 0, restored.stderr
            query = "SELECT count(*) || ':' || md5(string_agg(body, '' ORDER BY id)) FROM filler"
            assert asyncio.run(_fetchval(fresh, query)) == asyncio.run(_fetchval(source, query))
            # Again, into the server that now holds the data: --clean --if-exists replaces it.
            again = restore(runner, fresh, folder / dump)
            assert again.returncode == 0, again.stderr
            assert asyncio.run(_fetchval(fresh, query)) == asyncio.run(_fetchval(source, query))
        finally:
            fresh.stop()
        size = (folder / dump).stat().st_size
        record_property(f"timing: backup ({shell}): pg_restore (README) of a {size / 2**20:.1f} MiB dump into a fresh "
                        "server, s", round(seconds, 2))


async def _table_mib(server) -> float:
    return await _fetchval(server, "SELECT pg_total_relation_size('filler')") / 2**20


async def _dump_stopped_while_locked(server, runner: Runner, folder: Path) -> tuple[int, str]:
    """Start the backup while another session holds an ACCESS EXCLUSIVE lock on the filler table (pg_dump then waits
    for it), and SIGTERM the shell once pg_dump has opened its partial file: the shell's exit code and stderr."""
    blocker = await _connect(server)
    proc = None
    try:
        await blocker.execute("BEGIN; LOCK TABLE filler IN ACCESS EXCLUSIVE MODE")
        proc = runner.popen(server, folder)
        deadline = time.monotonic() + 30
        while not partials(folder):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "pg_dump opened no partial file"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert proc.poll() is None, "the dump should be waiting for the lock"
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the shell did not stop on SIGTERM"
            await asyncio.sleep(0.1)
        return proc.returncode, proc.stderr.read()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        await blocker.close()
