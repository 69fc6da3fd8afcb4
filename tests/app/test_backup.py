"""A dump of the application's own schema and a user registered through its backend, restored by the chart
README's procedure into the running server and into a fresh one, and the app logs that user in again."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from harness.backup import (
    BACKUP,
    Runner,
    _connect,
    _execute,
    _fetchval,
    dumps,
    restore,
)
from harness.values import deep_merge

USER = {"email": "kept@example.com", "password": "Backup-restore-1", "display_name": "Kept"}


def _client() -> dict:
    """A client address of its own for each call: the login rate limit counts per address."""
    _client.count = getattr(_client, "count", 0) + 1
    return {"X-Forwarded-For": f"203.0.113.{_client.count}"}


def _start_backend(stack, migrate: bool):
    """What the cluster runs, in its order: the migration Job (unless the schema comes from a dump), the data
    collector, the backend's wait-for-redis, the backend."""
    from harness import appsrc

    image = appsrc.python_image("backend")
    if migrate:
        stack.run_to_completion("migrations", "wait-for-database", appsrc.tool_image("postgresql"), timeout=60)
        stack.run_to_completion("migrations", "migrate", image, timeout=300)
    if "data-collector" not in stack.pods:
        stack.serve("data-collector", "data-collector", appsrc.python_image("data-collector"))
    stack.run_to_completion("backend", "wait-for-redis", appsrc.tool_image("redis"), timeout=60)
    return stack.serve("backend", "backend", image)


def _logs_in(backend) -> bool:
    from harness.apphttp import request

    status, body = request(backend, "POST", "/api/v1/auth/login",
                           {"email": USER["email"], "password": USER["password"]}, _client())
    return status == 200 and "access_token" in body


@pytest.fixture(scope="module")
def app_dump(app_ready, tmp_path_factory):
    """The default release with backups on, run: the migrations, the backend, a user registered through it; then the
    rendered backup script's dump of that database. Yields the stack (its backend stopped) and the dump."""
    from harness.apphttp import request
    from harness.appstack import Release, Stack, scenario_values

    rel = Release("default", deep_merge(scenario_values("default"), BACKUP))
    stack = Stack(rel)
    try:
        stack.start_postgres()
        stack.start_redis()
        backend = _start_backend(stack, migrate=True)
        status, body = request(backend, "POST", "/api/v1/auth/register", USER, _client())
        assert status == 201, body
        assert _logs_in(backend)
        folder = tmp_path_factory.mktemp("app-backups")
        runner = Runner(rel.objects, stack.binaries, "debian", folder)
        started = time.monotonic()
        done = runner.run(stack.postgres, folder)
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        (dump,) = dumps(folder)
        # Scaled to 0 for the restore (README: Restore, step 1).
        stack.pods.pop("backend").stop()
        yield {"rel": rel, "stack": stack, "runner": runner, "dump": folder / dump, "seconds": seconds}
    finally:
        stack.close()


async def _alembic_version(server, database: str | None = None) -> set[str]:
    conn = await _connect(server, database)
    try:
        return {r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")}
    finally:
        await conn.close()


@pytest.mark.servers
class TestRestoreWithTheApplication:
    def test_the_dump_holds_the_schema_and_the_user(self, app_dump, record_property):
        from harness import appsrc

        listing = subprocess.run(["pg_restore", "--list", str(app_dump["dump"])], capture_output=True, text=True,
                                 env={"PATH": app_dump["stack"].binaries["PATH"]}, check=True).stdout
        for table in ("users", "conversations", "messages", "alembic_version"):
            assert f"TABLE DATA public {table} " in listing, listing
        assert asyncio.run(_alembic_version(app_dump["stack"].postgres)) == appsrc.head_revisions()
        record_property("timing: backup (app): pg_dump of the app's migrated database with one user, dump "
                        f"{app_dump['dump'].stat().st_size / 1024:.0f} KiB, s", round(app_dump["seconds"], 2))

    def test_restore_into_the_running_server(self, app_dump, record_property):
        """The user's row lost (the users table emptied), the README's restore into the same server brings it back."""
        stack = app_dump["stack"]
        asyncio.run(_execute(stack.postgres, "TRUNCATE users CASCADE"))
        assert asyncio.run(_fetchval(stack.postgres, "SELECT count(*) FROM users")) == 0
        started = time.monotonic()
        done = restore(app_dump["runner"], stack.postgres, app_dump["dump"])
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        backend = _start_backend(stack, migrate=False)
        try:
            assert _logs_in(backend)
        finally:
            stack.pods.pop("backend").stop()
        record_property("timing: backup (app): pg_restore (README) into the running server, s", round(seconds, 2))

    @pytest.mark.parametrize("fresh", ["empty", "migrated"])
    def test_restore_into_a_fresh_server(self, app_dump, fresh, record_property):
        """The database dropped; a fresh server (empty, as an external one would be; or migrated by a new
        install's post-install Job), the README's restore, and the backend of the same release logs the user in."""
        from harness import appsrc
        from harness.appstack import Stack

        old = app_dump["stack"].postgres
        asyncio.run(_execute(old, f'DROP DATABASE IF EXISTS "{old.database}" WITH (FORCE)', database="postgres"))
        assert not asyncio.run(_fetchval(old, f"SELECT 1 FROM pg_database WHERE datname = '{old.database}'",
                                         database="postgres"))
        stack = Stack(app_dump["rel"])
        try:
            stack.start_postgres()
            stack.start_redis()
            if fresh == "migrated":
                stack.run_to_completion("migrations", "migrate", appsrc.python_image("backend"), timeout=300)
            started = time.monotonic()
            done = restore(app_dump["runner"], stack.postgres, app_dump["dump"])
            seconds = time.monotonic() - started
            assert done.returncode == 0, done.stderr
            assert asyncio.run(_alembic_version(stack.postgres)) == appsrc.head_revisions()
            backend = _start_backend(stack, migrate=False)
            assert _logs_in(backend)
        finally:
            stack.close()
        record_property(f"timing: backup (app): pg_restore (README) into a fresh {fresh} server, s", round(seconds, 2))
