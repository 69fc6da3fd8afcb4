"""Backups on the real node: the release upgraded with `backup.enabled` (`helm upgrade --wait` ends: the claim check
Job bound the claim of the node's WaitForFirstConsumer StorageClass), a Job made from its CronJob as the chart
README says (`kubectl create job --from=cronjob/...`) succeeds and writes a custom-format dump of a plausible size into
the claim; the README's reader pod (Pod Security "restricted" in this namespace) reads it back byte for byte; and the
README's restore procedure, run command by command, brings back a user deleted after the dump, who then logs in
through the backend's Service."""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import time

from harness import realnode
from harness.cluster import KUBECTL, wait_for
from harness.realnode import README, fill, reader_manifest


def readme_section(heading: str) -> str:
    """The text of a chart README section, from its heading to the next heading of its level or above (a `#` line
    inside a fenced block is no heading)."""
    lines = README.read_text().splitlines()
    level = len(heading.split(" ", 1)[0])
    start = lines.index(heading)
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].lstrip().startswith("```")
        mark = re.match(r"^(#+) ", lines[end])
        if not fenced and mark and len(mark.group(1)) <= level:
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def console_commands(section: str) -> list[str]:
    """The commands of a section's ```console blocks, in order (comments left out)."""
    blocks = re.findall(r"```console\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def run_readme(real_cli, command: str) -> subprocess.CompletedProcess:
    """One README command line (kubectl ...), as a shell would split it."""
    argv = shlex.split(command)
    assert argv[0] == "kubectl", command
    return real_cli.kubectl(*argv[1:], timeout=900)


def test_backup_job_dump_reader_and_restore(real_cli, real_release, record_property, tmp_path):
    namespace, release, _ = real_release
    fullname = release  # the release's name holds "agentforge"
    api = realnode.Api(real_cli, namespace, release)
    account = {"email": f"backup-{secrets.token_hex(4)}@example.com", "password": secrets.token_urlsafe(12) + "Aa1",
               "display_name": "Backup"}
    status, body = api.post("/api/v1/auth/register", account)
    assert status == 201, body
    real_cli.upgrade(release, namespace, *realnode.chart_values(), "--set", "backup.enabled=true")
    try:
        cronjob = real_cli.get(namespace, "cronjob", f"{fullname}-backup")
        assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
        # The claim check bound the claim (the node's StorageClass binds on first consumer, and the upgrade waited).
        assert real_cli.get(namespace, "pvc", f"{fullname}-backup")["status"]["phase"] == "Bound"
        (check,) = [j for j in real_cli.get(namespace, "jobs")["items"]
                    if j["metadata"]["name"].startswith(f"{fullname}-backup-check-")]
        real_cli.kubectl("wait", "--namespace", namespace, "--for=condition=complete",
                         f"job/{check['metadata']['name']}", "--timeout=300s", timeout=360)
        assert "the backup claim is writable by uid 70" in real_cli.kubectl(
            "logs", "--namespace", namespace, f"job/{check['metadata']['name']}").stdout
        image = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
        placeholders = {"namespace": namespace, "fullname": fullname, "release": release, "image": image}

        # "Run one now": create the Job from the CronJob, wait for it, read its log.
        run_now = [fill(c, placeholders) for c in console_commands(readme_section("## Backups and restore"))[:3]]
        assert [shlex.split(c)[3:5] for c in run_now] == [["create", "job"], ["wait", "--for=condition=complete"]] + \
            [["logs", f"job/{fullname}-backup-now"]], run_now
        started = time.monotonic()
        run_readme(real_cli, run_now[0])
        run_readme(real_cli, run_now[1])
        seconds = time.monotonic() - started
        log = run_readme(real_cli, run_now[2]).stdout
        print(f"backup Job log:\n{log}")
        dumped = re.search(r"into (agentforge-\d{8}T\d{6}Z\.dump): (\d+) bytes in (\d+) s", log)
        assert dumped, log
        dump, size = dumped.group(1), int(dumped.group(2))
        # The app's schema and the users the tier registered: more than an empty archive, far less than the claim.
        assert 8_000 < size < 100 * 2**20, log
        assert re.search(rf"^-rw------- +1 +70 +70 +{size} .* {re.escape(dump)}$", log, re.M), log
        record_property(f"timing: real: backup Job from the CronJob to complete (dump {size / 1024:.0f} KiB), s",
                        round(seconds, 1))

        # The reader pod: ls and a byte-for-byte copy.
        reader = reader_manifest(placeholders)
        real_cli.kubectl("apply", "--namespace", namespace, "-f", "-", input=reader)
        read_cmds = [fill(c, placeholders | {"dump": dump}) for c in
                     console_commands(readme_section("### Reading the dumps: a throwaway pod"))]
        assert len(read_cmds) == 4 and read_cmds[0].endswith("apply -f backup-reader.yaml"), read_cmds
        run_readme(real_cli, read_cmds[1])
        listing = run_readme(real_cli, read_cmds[2]).stdout
        assert dump in listing and str(size) in listing, listing
        copy, target = read_cmds[3].split(" > ")
        copied = subprocess.run([KUBECTL, *real_cli.target.kubectl_args, *shlex.split(copy)[1:]], env=real_cli.env,
                                capture_output=True, timeout=300, check=True).stdout
        assert target == dump and len(copied) == size and copied.startswith(b"PGDMP"), (target, len(copied))
        (tmp_path / dump).write_bytes(copied)

        # The data lost after the dump: the user deleted (through the reader pod, which reaches the database).
        real_cli.kubectl("exec", "--namespace", namespace, "agentforge-backup-reader", "--", "psql", "--no-psqlrc",
                         "--set", "ON_ERROR_STOP=1", "--command",
                         f"DELETE FROM users WHERE email = '{account['email']}'")
        status, _ = api.post("/api/v1/auth/login", {"email": account["email"], "password": account["password"]})
        assert status == 401, status

        # "Restore", into the running server, command by command.
        restore = [fill(c, placeholders | {"dump": dump}) for c in console_commands(readme_section("### Restore"))]
        assert len(restore) == 7 and "pg_restore --clean --if-exists --no-owner" in restore[3], restore
        started = time.monotonic()
        for command in restore[:3]:
            run_readme(real_cli, command)
        assert not real_cli.component_pods(namespace, "backend")
        assert real_cli.get(namespace, "cronjob", f"{fullname}-backup")["spec"]["suspend"] is True
        run_readme(real_cli, restore[3])
        restored = time.monotonic() - started
        for command in restore[4:]:
            run_readme(real_cli, command)
        real_cli.wait_ready(namespace)
        assert real_cli.get(namespace, "cronjob", f"{fullname}-backup")["spec"]["suspend"] is False
        status, tokens = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(api.post(
            "/api/v1/auth/login", {"email": account["email"], "password": account["password"]})),
            timeout=120, interval=2, what="the restored user's login")
        assert "access_token" in tokens
        record_property("timing: real: README restore (backend to 0, pg_restore, back), s", round(restored, 1))
    finally:
        real_cli.kubectl("delete", "pod", "--namespace", namespace, "agentforge-backup-reader", "--ignore-not-found",
                         "--wait=false", check=False)
        # A failure between the README's steps 1 and 3 leaves the backend at 0, where the HPA leaves it.
        backend = real_cli.get(namespace, "deployment", f"{fullname}-backend")
        if not backend["spec"].get("replicas"):
            minimum = real_cli.get(namespace, "hpa", f"{fullname}-backend")["spec"]["minReplicas"]
            real_cli.kubectl("scale", "deployment", "--namespace", namespace, f"{fullname}-backend",
                             f"--replicas={minimum}")
        # Back to the tier's release; the kept claim goes too (its Jobs go with the CronJob).
        real_cli.upgrade(release, namespace, *realnode.chart_values())
        # Gone before the next test lists the namespace's claims (it waits for the pods that mounted it).
        real_cli.kubectl("delete", "pvc", "--namespace", namespace, f"{fullname}-backup", "--ignore-not-found",
                         "--timeout=300s", check=False, timeout=360)
