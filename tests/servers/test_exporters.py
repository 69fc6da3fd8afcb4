"""The exporters built from their Go modules, run with the rendered container's environment against the real Debian
PostgreSQL and Redis, serving the series the dashboard and the alerts read."""

from __future__ import annotations

import re
import subprocess
import urllib.request

import pytest

from harness import servers
from harness.exporters import ON, exporter
from harness.objects import env_of
from harness.render import render_chart
from harness.servers import (
    EXPORTER_SERIES,
    free_port,
    local_url,
    rendered_servers,
    start_postgres,
    start_redis,
    wait_until,
)


def resolve_env(c: dict, secret: dict[str, str], **override: str) -> dict[str, str]:
    """The rendered container's environment, secretKeyRefs read from the rendered Secret, then `override`."""
    env = {}
    for e in c["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        env[e["name"]] = secret[ref["key"]] if ref else e["value"]
    return env | override


def series(port: int) -> dict[str, float]:
    """{series line without its value: value} of an exporter's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def landing_page_status(port: int) -> int:
    """What the rendered readiness probe (GET / on port `metrics`) gets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return response.status


def by_name(samples: dict[str, float], name: str) -> list[float]:
    return [v for k, v in samples.items() if re.fullmatch(rf"{name}(\{{.*\}})?", k)]


def metric_names(samples: dict[str, float]) -> set[str]:
    return {re.sub(r"\{.*", "", k) for k in samples}


def run_exporter(component: str, env: dict[str, str], tmp_path):
    """The exporter binary built from its Go module (scripts/images/build.sh binary), run with the given environment
    and listening on a free port of 127.0.0.1 (the rendered `--web.listen-address` port is the pod's); returns
    (process, port). The caller stops it."""
    binary = servers.exporter_binary(f"{component.replace('postgresql', 'postgres')}-exporter")
    port = free_port()
    log = tmp_path / f"{component}-exporter.log"
    proc = subprocess.Popen([str(binary), f"--web.listen-address=127.0.0.1:{port}"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)

    def answers() -> bool:
        try:
            return bool(series(port))
        except OSError:
            return False

    wait_until(answers, f"{component} exporter", log)
    return proc, port


class TestAgainstRealServers:
    @pytest.fixture(scope="class")
    @classmethod
    def rendered(cls):
        objects = render_chart({**ON, "postgresql": {**ON["postgresql"], "config": {"max_connections": 87}}})
        return objects, rendered_servers(objects)

    def test_postgres_exporter(self, rendered, tmp_path, record_property):
        """postgres_exporter with the rendered environment, against the server run with the chart's configuration
        file: it logs in with the Secret's credentials and reads postgresql.config's max_connections."""
        objects, rendered = rendered
        secret = rendered["secret"]
        c = exporter(objects, "postgresql")
        database = env_of(c)["DATA_SOURCE_URI"]["value"].split("/")[1].split("?")[0]
        server = start_postgres(servers.binaries(), secret["POSTGRES_USER"], secret["POSTGRES_PASSWORD"], database,
                                config=rendered["postgresql_conf"])
        proc = None
        try:
            uri = env_of(c)["DATA_SOURCE_URI"]["value"].replace(":5432/", f":{server.port}/")
            proc, port = run_exporter("postgresql", resolve_env(c, secret, DATA_SOURCE_URI=uri), tmp_path)
            samples = series(port)
            record_property("timing: servers: postgres_exporter series (metrics)",
                            f"{len(samples)} ({len(metric_names(samples))})")
            assert by_name(samples, "pg_up") == [1.0]
            assert landing_page_status(port) == 200
            for name in EXPORTER_SERIES["postgresql"]:
                assert by_name(samples, name), name
            assert by_name(samples, "pg_settings_max_connections") == [87.0]
            assert sum(by_name(samples, "pg_stat_activity_count")) >= 1
        finally:
            if proc:
                servers.stop(proc)
            server.stop()

    def test_redis_exporter(self, rendered, tmp_path, record_property):
        """redis_exporter with the rendered environment, against the bundled Redis started by its rendered script;
        with a wrong password it still serves, and reports Redis down."""
        objects, rendered = rendered
        server = start_redis(servers.binaries(), rendered)
        c = exporter(objects, "redis")
        env = resolve_env(c, rendered["secret"], REDIS_ADDR=local_url(env_of(c)["REDIS_ADDR"]["value"], server.port))
        proc = None
        try:
            proc, port = run_exporter("redis", env, tmp_path)
            samples = series(port)
            record_property("timing: servers: redis_exporter series (metrics)",
                            f"{len(samples)} ({len(metric_names(samples))})")
            assert by_name(samples, "redis_up") == [1.0]
            for name in EXPORTER_SERIES["redis"]:
                assert by_name(samples, name), name
            # redis.maxmemory (256mb), from the rendered redis.conf, is what Redis reports.
            assert by_name(samples, "redis_memory_max_bytes") == [256 * 1024 * 1024]
            servers.stop(proc)
            proc, port = run_exporter("redis", env | {"REDIS_PASSWORD": "wrong"}, tmp_path)
            assert by_name(series(port), "redis_up") == [0.0]
            assert landing_page_status(port) == 200, "a Redis it cannot reach leaves the exporter ready"
        finally:
            if proc:
                servers.stop(proc)
            server.stop()
