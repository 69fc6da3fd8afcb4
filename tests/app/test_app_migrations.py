"""The migration Job, run for real: its wait-for-database container and `alembic upgrade head`, with the backend
image's layout (docker/Dockerfile.backend) and AgentForge's own migrations, against a real PostgreSQL configured
from the render. Every scenario in which the Job's containers differ runs (tests/harness/appstack.py)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from harness import appsrc
from harness.appstack import HOSTILE_PASSWORD, Stack, distinct_scenarios, release
from harness.servers import free_port

SCENARIOS = distinct_scenarios("migrations", "wait-for-database", "migrate")


async def database_state(server) -> tuple[list, list]:
    """alembic_version and every column of the public schema: what a migration run changes."""
    conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                                 database=server.database, timeout=10)
    try:
        version = [r[0] for r in await conn.fetch("SELECT version_num FROM alembic_version")]
        columns = [tuple(r) for r in await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2")]
        return version, columns
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=SCENARIOS)
def migrated(request, app_ready):
    stack = Stack(release(request.param))
    request.addfinalizer(stack.close)
    stack.start_postgres()
    image = appsrc.python_image("backend")
    started = time.monotonic()
    stack.run_to_completion("migrations", "wait-for-database", appsrc.tool_image("postgresql"), timeout=60)
    waited = time.monotonic() - started
    first = stack.run_to_completion("migrations", "migrate", image, timeout=300)
    after_first = asyncio.run(database_state(stack.postgres))
    started = time.monotonic()
    second = stack.run_to_completion("migrations", "migrate", image, timeout=300)
    rerun = time.monotonic() - started
    after_second = asyncio.run(database_state(stack.postgres))
    return {"stack": stack, "first": first, "second": second, "after_first": after_first,
            "after_second": after_second, "waited": waited, "rerun": rerun}


def test_upgrade_reaches_the_code_head(migrated, record_property):
    heads = appsrc.head_revisions()
    assert heads, "no head revision found in backend/alembic/versions"
    version, columns = migrated["after_first"]
    assert set(version) == heads, f"alembic_version {version}, the code's head {heads}"
    assert {c[0] for c in columns} >= {"users", "conversations", "messages"}, columns
    scenario = migrated["stack"].rel.scenario
    record_property(f"timing: app {scenario}: wait-for-database ended after", f"{migrated['waited']:.1f} s")
    record_property(f"timing: app {scenario}: alembic upgrade head run again", f"{migrated['rerun']:.1f} s")


def test_running_it_again_changes_nothing(migrated):
    assert migrated["after_second"] == migrated["after_first"]
    assert "Running upgrade" not in migrated["second"].logs(), migrated["second"].logs()


def test_password_with_every_special_character(migrated):
    """The bundled PostgreSQL was initialised with a password full of characters that break URLs and configparser
    (from the values, or from the user's Secret in the gitops scenario), and the migration (run above) got through
    with it."""
    stack = migrated["stack"]
    if not stack.rel.value("postgresql", "enabled"):
        pytest.skip("an external database: its password is the scenario's own")
    assert stack.postgres.password == HOSTILE_PASSWORD
    assert set("%@:/# é") <= set(HOSTILE_PASSWORD)
    assert "Running upgrade" in migrated["first"].logs()


def test_wait_for_database_keeps_waiting_while_nothing_answers(app_ready):
    """The wait container really waits: pointed at a port where nothing listens, it is still running."""
    rel = release("default")
    stack = Stack(rel)
    try:
        stack.wire_service("postgresql", free_port())
        pod = stack.pod("migrations", "wait-for-database", appsrc.tool_image("postgresql")).start()
        time.sleep(4)
        assert pod.running(), pod.logs()
        assert "waiting for" in pod.logs()
    finally:
        stack.close()
