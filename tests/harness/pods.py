"""Run one rendered container for real on this machine, as the kubelet would run it in a pod.

What is taken from the render, unchanged: the container's command and args, workingDir, environment (env and
envFrom, with ConfigMap and Secret references resolved from the rendered objects, or from objects the test
declares as existing outside the chart), the pod's numeric runAsUser/runAsGroup/fsGroup, readOnlyRootFilesystem,
allowPrivilegeEscalation, dropped capabilities, and the volumes it mounts (emptyDir, configMap and secret volumes
are writable or read-only exactly as rendered).

What stands in for the cluster:
- the image: the root filesystem is this machine's /usr, /etc and so on, read-only, plus the image's own folders
  (laid out by the caller, e.g. from the upstream Dockerfile) mounted read-only where the image has them;
- the image (`Image`, which must stand for the repository the container renders): the root filesystem is this
  machine's /usr, /etc and so on, read-only, plus the image's own folders (laid out by the caller, e.g. from the
  upstream Dockerfile) mounted read-only where the image has them; its ENTRYPOINT/CMD and WORKDIR where the
  container renders none;
- the pod network: a network namespace of its own (bubblewrap), so the container listens on its rendered port
  without colliding with anything, and reaches nothing but loopback;
- Services: the in-cluster host names the caller wires (`Upstream`, for the callers allowed to reach them) resolve,
  through the sandbox's /etc/hosts, to loopback addresses inside the pod's namespace, where a forwarder relays each
  Service port to a real server on 127.0.0.1. Nothing in the environment is rewritten.
- the kubelet's view of the pod: `Pod.url(port)` is a 127.0.0.1 address on this machine forwarded into the pod's
  namespace, to the container port at the pod's own address there (POD_ADDRESS, not its 127.0.0.1).

Tests may replace the command or working directory to run a script in the container's place, with everything
else of it.

Needs root: bubblewrap builds the mount and network namespaces, setpriv then drops to the pod's uid and gid with
no capabilities and no_new_privs, and the forwarder enters the pod's network namespace (setns).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.netns import Forwarder, Upstream, hosts_file
from harness.objects import pod_spec
from harness.podenv import ObjectStore, PodError, expand, resolve_env

BWRAP = shutil.which("bwrap") or "/usr/bin/bwrap"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
# The parts of this machine's filesystem a container image would also have, mounted read-only. /etc is mounted
# entry by entry, so that a volume can still be mounted under it (as a runtime creates mount points in the image).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/opt")
# The PATH of the python and node base images.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# -- the rendered environment ----------------------------------------------------------------------------------


# -- the pod network ----------------------------------------------------------------------------------------------


# -- the pod --------------------------------------------------------------------------------------------------

@dataclass
class Image:
    """What stands in for a container image: folders mounted read-only at image paths, and PATH entries first.
    `repository` is the image it stands for: a pod refuses to run a container that renders another one."""

    repository: str
    mounts: dict[str, Path]
    path: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = "/"


class Pod:
    """One container of a rendered workload, running in a sandbox until stopped (or until it exits)."""

    def __init__(self, store: ObjectStore, workload: dict, container_name: str, image: Image, *,
                 upstreams: list[Upstream] = (), env_override: dict[str, str] | None = None,
                 command: list[str] | None = None, working_dir: str | None = None, name: str | None = None):
        self.workload = workload
        spec = pod_spec(workload)
        self.spec = spec
        matches = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == container_name]
        if not matches:
            raise PodError(f"{workload['kind']}/{workload['metadata']['name']} has no container {container_name}")
        self.container = matches[0]
        if image_repository(self.container["image"]) != image.repository:
            raise PodError(f"container {container_name} renders image {self.container['image']}, but runs here as "
                           f"a stand-in for {image.repository}")
        self.store = store
        self.image = image
        self.upstreams = list(upstreams)
        self.name = name or f"{workload['metadata']['name']}-{container_name}"
        self.env = resolve_env(store, workload, self.container) | (env_override or {})
        self.command_override = command
        self.working_dir = working_dir or self.container.get("workingDir") or image.workdir
        self.base = Path(tempfile.mkdtemp(prefix=f"af-pod-{container_name}-"))
        self.log_path = self.base / "container.log"
        self.proc: subprocess.Popen | None = None
        self.forwarder: Forwarder | None = None
        self.child_pid: int | None = None
        self.volume_dirs: dict[str, Path] = {}
        self._ports: dict[int, int] = {}

    # what the pod runs
    def argv(self) -> list[str]:
        if self.command_override is not None:
            return self.command_override
        # Kubernetes: command replaces the image's ENTRYPOINT, args its CMD (which goes too when command is set).
        command = self.container.get("command") or list(self.image.entrypoint)
        args = self.container.get("args") or ([] if self.container.get("command") else list(self.image.cmd))
        if not command and not args:
            raise PodError(f"container {self.container['name']} renders no command and its image has none")
        return [expand(part, self.env) for part in [*command, *args]]

    def identity(self) -> tuple[int, int, list[int]]:
        pod = self.spec.get("securityContext", {})
        ctx = {**pod, **self.container.get("securityContext", {})}
        uid, gid = ctx.get("runAsUser"), ctx.get("runAsGroup")
        if uid is None or gid is None:
            raise PodError(f"container {self.container['name']} sets no numeric runAsUser/runAsGroup")
        groups = [pod["fsGroup"]] if "fsGroup" in pod else []
        groups += pod.get("supplementalGroups", [])
        return uid, gid, groups

    def _volume_mounts(self) -> list[tuple[str, str, str]]:
        """(bwrap option, source, target) of the container's volumeMounts, as rendered."""
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        mounts: list[tuple[str, str, str]] = []
        ro_root = self.container.get("securityContext", {}).get("readOnlyRootFilesystem", False)
        if not ro_root:
            raise PodError(f"container {self.container['name']} has a writable root filesystem; this harness only "
                           "runs read-only roots")
        for mount in self.container.get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is None:
                raise PodError(f"container {self.container['name']} mounts {mount['name']!r}, which is no volume "
                               "of the pod")
            host = self.volume_dirs.get(mount["name"])
            if host is None:
                host = self.base / "volumes" / mount["name"]
                host.mkdir(parents=True)
                if "emptyDir" in volume or "persistentVolumeClaim" in volume:
                    host.chmod(0o777)  # what the kubelet gives an emptyDir
                elif "configMap" in volume or "secret" in volume:
                    kind, ref = (("ConfigMap", volume["configMap"]) if "configMap" in volume
                                 else ("Secret", {"name": volume["secret"]["secretName"], **volume["secret"]}))
                    data = self.store.data(kind, ref["name"])
                    if data is None:
                        raise PodError(f"volume {mount['name']} needs {kind} {ref['name']!r}, which is neither "
                                       "rendered nor declared as existing")
                    # With `items`, the kubelet projects the keys listed, each at its path, and nothing else.
                    items = ref.get("items") or [{"key": key, "path": key} for key in data]
                    for item in items:
                        if item["key"] not in data:
                            raise PodError(f"volume {mount['name']} needs key {item['key']!r} of {kind} "
                                           f"{ref['name']!r}, which has only {sorted(data)}")
                        target = host / item["path"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_text(data[item["key"]])
                        target.chmod(0o644)
                    host.chmod(0o755)
                else:
                    raise PodError(f"volume {mount['name']} is of a kind this harness cannot provide: {sorted(volume)}")
                self.volume_dirs[mount["name"]] = host
            source = host / mount["subPath"] if mount.get("subPath") else host
            mounts.append(("--ro-bind" if mount.get("readOnly") else "--bind", str(source), mount["mountPath"]))
        return mounts

    def _bwrap(self, info_fd: int, block_fd: int, hosts: Path) -> list[str]:
        uid, gid, groups = self.identity()
        security = self.container.get("securityContext", {})
        dropped = [c.upper() for c in security.get("capabilities", {}).get("drop", [])]
        if dropped != ["ALL"]:
            raise PodError(f"container {self.container['name']} does not drop ALL capabilities: {dropped}")
        args = [BWRAP, "--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--hostname", self.name[:63], "--info-fd", str(info_fd), "--block-fd", str(block_fd)]
        for path in SYSTEM_DIRS:
            if os.path.lexists(path):
                args += (["--symlink", os.readlink(path), path] if os.path.islink(path)
                         else ["--ro-bind", path, path])
        args += ["--perms", "0755", "--dir", "/etc"]
        for entry in sorted(os.scandir("/etc"), key=lambda e: e.name):
            if entry.name != "hosts":
                args += (["--symlink", os.readlink(entry.path), entry.path] if entry.is_symlink()
                         else ["--ro-bind", entry.path, entry.path])
        args += ["--ro-bind", str(hosts), "/etc/hosts", "--proc", "/proc", "--dev", "/dev"]
        mounts: list[tuple[str, str, str]] = [("--ro-bind", str(source), target)
                                              for target, source in self.image.mounts.items()]
        mounts += self._volume_mounts()
        for _, _, target in mounts:
            # A container runtime creates the mount points a volume needs in the image: so do we, in its folder.
            for image_target, source in self.image.mounts.items():
                if target.startswith(image_target.rstrip("/") + "/"):
                    (Path(source) / os.path.relpath(target, image_target)).mkdir(parents=True, exist_ok=True)
        bound, made = [*SYSTEM_DIRS], {"/etc"}
        for option, source, target in mounts:
            # bubblewrap would make missing parents 0700, which the pod's uid could not cross: make them 0755, as
            # an image's folders are, unless they lie inside something already mounted.
            for parent in map(str, list(reversed(Path(target).parents))[1:]):
                if parent not in made and not any(parent == b or parent.startswith(b + "/") for b in bound):
                    args += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
            args += [option, source, target]
            bound.append(target)
        args += ["--remount-ro", "/"]
        args += ["--chdir", self.working_dir]
        priv = [SETPRIV, f"--reuid={uid}", f"--regid={gid}",
                f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all"]
        if security.get("allowPrivilegeEscalation") is False:
            priv.append("--no-new-privs")
        return [*args, "--", *priv, "--", *self.argv()]

    def start(self) -> Pod:
        hosts_text, addresses = hosts_file(self.upstreams, self.name[:63])
        hosts = self.base / "hosts"
        hosts.write_text(hosts_text)
        hosts.chmod(0o644)
        env = {"PATH": ":".join([*self.image.path, IMAGE_PATH]), "HOME": "/", "HOSTNAME": self.name[:63],
               **self.image.env, **self.env}
        info_r, info_w = os.pipe()
        block_r, block_w = os.pipe()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self._bwrap(info_w, block_r, hosts), env=env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, pass_fds=(info_w, block_r),
                                         process_group=0)
        os.close(info_w)
        os.close(block_r)
        try:
            with os.fdopen(info_r) as info:
                child = json.loads(info.read() or "{}").get("child-pid")
            if not child:
                raise PodError(f"bubblewrap did not start {self.name}:\n{self.logs()}")
            self.child_pid = child
            self.forwarder = Forwarder(f"/proc/{child}/ns/net")
            for address, upstream in zip(addresses, self.upstreams, strict=True):
                self.forwarder.service(address, upstream)
            for port in self.container.get("ports", []):
                self._ports[port["containerPort"]] = self.forwarder.expose(port["containerPort"])
        finally:
            with contextlib.suppress(BrokenPipeError):  # bubblewrap already gone: the error above says why
                os.write(block_w, b"go")
            os.close(block_w)
        return self

    def port(self, port: int | str) -> int:
        """The 127.0.0.1 port on this machine that reaches a container port (number or name)."""
        if isinstance(port, str):
            named = {p["name"]: p["containerPort"] for p in self.container.get("ports", []) if "name" in p}
            if port not in named:
                raise PodError(f"container {self.container['name']} has no port named {port!r}: {named}")
            port = named[port]
        if port not in self._ports:
            if self.forwarder is None:
                raise PodError("the pod is not started")
            self._ports[port] = self.forwarder.expose(port)
        return self._ports[port]

    def url(self, port: int | str, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port(port)}{path}"

    def processes(self) -> list[dict]:
        """The container's processes (bubblewrap's own init left out): pid, uid, gid, effective capabilities,
        no_new_privs and command line, read from /proc of this machine."""
        if self.child_pid is None:
            return []
        namespace = os.readlink(f"/proc/{self.child_pid}/ns/pid")
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != namespace or os.readlink(f"/proc/{entry}/exe") == BWRAP:
                    continue
                status = dict(line.split(":", 1) for line in Path(f"/proc/{entry}/status").read_text().splitlines())
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            out.append({"pid": int(entry), "uid": int(status["Uid"].split()[1]), "gid": int(status["Gid"].split()[1]),
                        "CapEff": int(status["CapEff"], 16), "NoNewPrivs": int(status["NoNewPrivs"]),
                        "cmdline": cmdline})
        return out

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for a run-to-completion container; its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PodError(f"{self.name} still running after {timeout}s; log:\n{self.logs()[-4000:]}") from None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
        if self.forwarder is not None:
            self.forwarder.close()
            self.forwarder = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def image_repository(reference: str) -> str:
    """The repository of an image reference, without registry, tag or digest (docker.io's library/ kept)."""
    name = reference.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


