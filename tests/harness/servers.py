"""Real servers on 127.0.0.1 for the server and app tiers: PostgreSQL and Redis from Debian's packages.

Each runs on a free port in a temp dir, is configured from what the chart renders, is stopped by its `stop`, and
every wait is bounded. scripts/install-test-servers.sh installs the packages; `binaries()` runs it when they are
missing.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import pytest

from harness.objects import component_name, container, env_of
from harness.render import ROOT, Manifests

START_TIMEOUT = 30
# The series of the data stores' exporters (postgresql.metrics, redis.metrics) that the dashboard's "Data stores" row
# and the alerts read (tests/render/test_grafana.py, tests/render/test_alerts.py): tests/servers/test_exporters.py
# checks that the real exporters serve each.
EXPORTER_SERIES = {
    "postgresql": {"pg_up", "pg_stat_activity_count", "pg_settings_max_connections"},
    "redis": {"redis_up", "redis_connected_clients", "redis_config_maxclients", "redis_memory_used_bytes",
              "redis_memory_max_bytes"},
}
STOP_TIMEOUT = 15
IS_ROOT = os.geteuid() == 0


def rendered_servers(objects: Manifests, release: str = "agentforge") -> dict:
    """What a render gives the bundled servers: the app Secret, and the Redis and PostgreSQL
    containers with their configuration files (None where the render has no bundled server)."""
    secret = objects.get("Secret", f"{component_name('secrets', release)}")
    redis_set = objects.find("StatefulSet", component_name("redis", release))
    postgres_set = objects.find("StatefulSet", component_name("postgresql", release))
    redis_conf = objects.find("ConfigMap", component_name("redis", release))
    postgres_conf = objects.find("ConfigMap", component_name("postgresql", release))
    return {
        "secret": {k: base64.b64decode(v).decode() for k, v in secret["data"].items()},
        "redis_conf": redis_conf["data"]["redis.conf"] if redis_conf else None,
        # The chart's configuration file, with the container's PGDATA (whose postgresql.conf it includes) marked.
        "postgresql_conf": postgres_conf["data"]["postgresql.conf"].replace(
            env_of(container(postgres_set, "postgresql"))["PGDATA"]["value"], "@PGDATA@") if postgres_conf else None,
        "redis": container(redis_set, "redis") if redis_set else None,
        "postgresql": container(postgres_set, "postgresql") if postgres_set else None,
    }


def binaries() -> dict:
    """Where PostgreSQL's and Redis' programs are (installed first when missing)."""
    if pg_bin() is None or not shutil.which("redis-server"):
        subprocess.run(["bash", str(ROOT / "scripts" / "install-test-servers.sh")], check=False, timeout=600)
    if pg_bin() is None or not shutil.which("redis-server"):
        pytest.fail("PostgreSQL or Redis missing: run scripts/install-test-servers.sh")
    return {"pg": pg_bin(), "PATH": f"{pg_bin()}:{os.environ['PATH']}"}


def exporter_binary(name: str) -> Path:
    """The host binary of a metrics exporter ("postgres-exporter" or "redis-exporter"), built from its Go module by
    scripts/images/build.sh (first time only: it is cached), which prints its path."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "images" / "build.sh"), "binary", name],
                          check=True, timeout=600, stdout=subprocess.PIPE, text=True)
    return Path(done.stdout.strip())


def url_credentials(url: str) -> tuple[str, str]:
    """User and password of a URL, percent-decoded."""
    parts = urlsplit(url)
    return unquote(parts.username or ""), unquote(parts.password or "")


def local_url(url: str, port: int, scheme: str | None = None, host: str = "127.0.0.1") -> str:
    """The rendered URL with its host and port replaced by host:port, 127.0.0.1 unless told (userinfo kept, still
    encoded)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit((scheme or parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


def wait_until(check, what: str, log: Path, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready after {timeout}s; log:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def probe_ok(command: list[str], env: dict[str, str]) -> bool:
    """Run a rendered exec probe as the kubelet would: success is exit code 0."""
    try:
        return subprocess.run(command, env=env, capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


# -- TLS ---------------------------------------------------------------------------------------------------------

class ThrowawayCa:
    """A throwaway CA and the server certificates it signs, made with the openssl CLI in a temp dir (`cleanup` removes
    it). Certificates are P-256, valid for a day."""

    def __init__(self, name: str = "AgentForge test CA"):
        self.base = Path(tempfile.mkdtemp(prefix="af-pki-"))
        self.ca_cert = self.base / "ca.crt"
        self.ca_key = self.base / "ca.key"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                      "-keyout", str(self.ca_key), "-out", str(self.ca_cert), "-days", "1", "-subj", f"/CN={name}",
                      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")

    def _openssl(self, *args: str) -> None:
        if not shutil.which("openssl"):
            pytest.fail("openssl missing: run scripts/install-test-servers.sh")
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    def issue(self, label: str, names: list[str]) -> tuple[Path, Path]:
        """A server certificate for DNS names and IP addresses, signed by this CA: (certificate, key)."""
        key, csr, cert = (self.base / f"{label}.{ext}" for ext in ("key", "csr", "crt"))
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                      "-out", str(csr), "-subj", f"/CN={names[0]}")
        alt = ",".join(f"IP:{n}" if n.replace(".", "").isdigit() else f"DNS:{n}" for n in names)
        ext = self.base / f"{label}.ext"
        ext.write_text(f"subjectAltName={alt}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        self._openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
                      "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(ext))
        return cert, key

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


# -- PostgreSQL --------------------------------------------------------------------------------------------------

class PostgresServer:
    """initdb and postgres as the `postgres` user (when root), like the image's entrypoint does with its env."""

    def __init__(self, binaries: dict, user: str, password: str, database: str,
                 tls: tuple[Path, Path] | None = None, config: str | None = None):
        self.bin = binaries["pg"]
        self.path = binaries["PATH"]
        self.user = user
        self.password = password
        self.database = database
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="af-pg-"))
        self.data = self.base / "pgdata"
        self.log = self.base / "postgres.log"
        self.proc: subprocess.Popen | None = None
        if IS_ROOT:
            os.chown(self.base, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
        self.account = {"user": "postgres", "group": "postgres"} if IS_ROOT else {}
        self.tls = tls  # (certificate, key): ssl=on, and TCP clients must use TLS (hostssl only)
        self.config = config  # rendered_servers' postgresql_conf (postgresql.config), run as the pod runs it

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": self.path, "LANG": "C.UTF-8", "HOME": str(self.base), **extra}

    def start(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if IS_ROOT:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
                        "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                       env=self.env(), check=True, capture_output=True, timeout=120, **self.account)
        pwfile.unlink()
        settings = []
        if self.tls:
            # The key must belong to the server's user, readable by it alone; TCP clients get in over TLS only.
            for source, name in zip(self.tls, ("server.crt", "server.key"), strict=True):
                shutil.copyfile(source, self.base / name)
                (self.base / name).chmod(0o600)
                if IS_ROOT:
                    shutil.chown(self.base / name, "postgres", "postgres")
            settings = ["-c", "ssl=on", "-c", f"ssl_cert_file={self.base / 'server.crt'}",
                        "-c", f"ssl_key_file={self.base / 'server.key'}"]
            (self.data / "pg_hba.conf").write_text("local all all scram-sha-256\n"
                                                   "hostssl all all 127.0.0.1/32 scram-sha-256\n")
        if self.config:
            # As the pod: `postgres -c config_file=` the chart's file, which includes initdb's from the data folder.
            assert self.config.count("@PGDATA@") == 1, self.config
            config_file = self.base / "chart-postgresql.conf"
            config_file.write_text(self.config.replace("@PGDATA@", str(self.data)))
            settings += ["-c", f"config_file={config_file}"]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-c", "listen_addresses=127.0.0.1",
                 "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.base}", "-c", "fsync=off",
                 *settings],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT, process_group=0, **self.account)

    def probe_env(self, **extra: str) -> dict[str, str]:
        """The container's environment for the rendered probes: POSTGRES_USER/DB, plus the port."""
        return self.env(POSTGRES_USER=self.user, POSTGRES_DB=self.database, PGPORT=str(self.port), **extra)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(self.base, ignore_errors=True)


async def create_database(server: PostgresServer) -> None:
    """What the image's entrypoint does after initdb when POSTGRES_DB is not `postgres`."""
    conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user, password=server.password,
                                 database="postgres", timeout=10, ssl="require" if server.tls else "disable")
    try:
        await conn.execute(f'CREATE DATABASE "{server.database}"')
    finally:
        await conn.close()


class RedisServer:
    """redis-server started by the rendered start script, with the rendered redis.conf moved into a temp dir."""

    def __init__(self, binaries: dict, rendered: dict):
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="af-redis-"))
        self.log = self.base / "redis.log"
        self.password = rendered["secret"]["REDIS_PASSWORD"]
        # A redis-server first on PATH that records its arguments and whether REDIS_PASSWORD is still set, then
        # execs the real one: Redis rewrites its process title over argv and environ, so /proc/<pid>/cmdline
        # and /proc/<pid>/environ alone would not show what it was started with.
        (self.base / "bin").mkdir()
        self.argv = self.base / "argv"
        self.env_state = self.base / "env-state"
        wrapper = self.base / "bin" / "redis-server"
        wrapper.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$@" > {self.argv}\n'
            f'if [ -n "${{REDIS_PASSWORD+set}}" ]; then echo set; else echo unset; fi > {self.env_state}\n'
            f'exec {shutil.which("redis-server")} "$@"\n')
        wrapper.chmod(0o755)
        self.path = f"{self.base / 'bin'}:{binaries['PATH']}"
        (self.base / "etc").mkdir()
        (self.base / "run").mkdir()
        (self.base / "data").mkdir()
        conf = []
        for line in rendered["redis_conf"].splitlines():
            key = line.split(" ", 1)[0]
            conf.append({"dir": f"dir {self.base / 'data'}", "port": f"port {self.port}"}.get(key, line))
        conf += ["bind 127.0.0.1", "daemonize no", f"logfile {self.log}"]
        (self.base / "etc" / "redis.conf").write_text("\n".join(conf) + "\n")
        script = rendered["redis"]["command"][-1]
        assert script.count("/etc/redis/redis.conf") == 1 and script.count("/run/redis/redis.conf") == 2, script
        self.script = (script.replace("/etc/redis/redis.conf", str(self.base / "etc" / "redis.conf"))
                       .replace("/run/redis/redis.conf", str(self.base / "run" / "redis.conf")))
        self.command = [*rendered["redis"]["command"][:-1], self.script]
        self.proc: subprocess.Popen | None = None

    def env(self, password: str | None = None) -> dict[str, str]:
        return {"PATH": self.path, "REDIS_PASSWORD": self.password if password is None else password}

    def probe(self, command: list[str]) -> list[str]:
        return [*command[:-1], command[-1].replace("-p 6379", f"-p {self.port}")]

    def start(self) -> None:
        self.log.touch()
        self.proc = subprocess.Popen(self.command, env=self.env(), stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("a"), process_group=0)

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


def start_redis(binaries: dict, rendered: dict) -> RedisServer:
    """The bundled Redis started by its rendered start script, ready by its rendered readiness probe."""
    server = RedisServer(binaries, rendered)
    try:
        server.start()
        readiness = server.probe(rendered["redis"]["readinessProbe"]["exec"]["command"])
        wait_until(lambda: probe_ok(readiness, server.env()), "redis (rendered readiness probe)", server.log)
    except BaseException:
        server.stop()
        raise
    return server


def start_postgres(binaries: dict, user: str, password: str, database: str,
                   readiness: list[str] | None = None, tls: tuple[Path, Path] | None = None,
                   config: str | None = None) -> PostgresServer:
    """A started PostgreSQL with the database created, ready by the rendered readiness probe (else pg_isready).
    With `tls` (certificate, key), TCP clients must use TLS; with `config` (rendered_servers' postgresql_conf), it
    runs the chart's configuration file. The caller stops it."""
    server = PostgresServer(binaries, user, password, database, tls, config)
    try:
        server.start()
        probe = readiness or ["pg_isready", "-h", "127.0.0.1", "-U", user]
        wait_until(lambda: probe_ok(probe, server.probe_env()), "postgres (readiness probe)", server.log)
        if database != "postgres":
            asyncio.run(create_database(server))
    except BaseException:
        server.stop()
        raise
    return server


def redis_quoted(text: str) -> str:
    """A redis.conf argument holding any bytes: double-quoted, every byte a \\xHH escape."""
    return '"{}"'.format("".join(f"\\x{b:02x}" for b in text.encode()))


class PlainRedis:
    """redis-server with a password and nothing else: what an external (managed) Redis looks like. With `username`,
    that ACL user holds the password and the default user is off; with `tls` (certificate, key, CA), it listens with
    TLS only (tls-port) and asks no client certificate."""

    def __init__(self, password: str, *, username: str = "", tls: tuple[Path, Path, Path] | None = None):
        self.port = free_port()
        self.password = password
        self.username = username
        self.tls = tls
        self.base = Path(tempfile.mkdtemp(prefix="af-ext-redis-"))
        self.log = self.base / "redis.log"
        conf = ["bind 127.0.0.1", f"dir {self.base}", f"logfile {self.log}", 'save ""']
        if tls:
            cert, key, ca = tls
            conf += ["port 0", f"tls-port {self.port}", f"tls-cert-file {cert}", f"tls-key-file {key}",
                     f"tls-ca-cert-file {ca}", "tls-auth-clients no"]
        else:
            conf.append(f"port {self.port}")
        if username:
            secret = f"#{hashlib.sha256(password.encode()).hexdigest()}" if password else "nopass"
            conf += ["user default off", f"user {redis_quoted(username)} on {secret} ~* &* +@all"]
        elif password:
            conf.append(f"requirepass {redis_quoted(password)}")
        (self.base / "redis.conf").write_text("\n".join(conf) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> PlainRedis:
        self.log.touch()
        self.proc = subprocess.Popen([shutil.which("redis-server"), str(self.base / "redis.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0)
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls:
            cli += ["--tls", "--cacert", str(self.tls[2])]
        if self.username:
            cli += ["--user", self.username]
        cli.append("ping")
        env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": self.password}
        wait_until(lambda: subprocess.run(cli, env=env, capture_output=True, text=True,
                                          timeout=10).stdout.strip() == "PONG", "external redis", self.log)
        return self

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)
