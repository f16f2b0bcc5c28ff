"""Test support: runs a pod's containers as local processes, with their commands exactly as the
manifests render them, so that the tests exercise the real install path and the real server
command, and a pod spec that cannot work fails here.

Each container runs as PID 1 of its own user, mount and PID namespaces (no privileges needed),
where the runner does what a kubelet and a container runtime do:
- the pod's volumes are mounted at their paths: an emptyDir is a directory of the pod, a
  configMap a directory holding the ConfigMap's data, a persistentVolumeClaim the directory
  standing for the claimed volume (shared by every pod given it), `subPath` a directory in it;
  read-only when the mount or the claim says so;
- a missing `subPath` is made as a kubelet makes it: on a writable volume, with the volume's own
  mode, even when the mount is read-only; on a read-only volume (a claim the pod marks
  `readOnly`, a ConfigMap) it is an error, `CreateContainerConfigError`, as the kubelet refuses
  it (kubernetes/kubernetes#70662) and retries 10 s later;
- a mount may only lie under /opt or /tmp (a fresh /opt hides the machine's); any other path
  fails the container, so the runner never writes outside its own directories;
- /dev is a fresh tmpfs with the usual device nodes, and /dev/termination-log is the
  container's termination message, kept when it fails with `FallbackToLogsOnError`;
- /etc/hosts resolves the cluster's Service names (`<name>.<namespace>.svc`) to 127.0.0.1, as
  cluster DNS would;
- `$(VAR)` in the command is expanded from the container's environment, as Kubernetes does.
The image is not pulled: `image_path`, the `bin` directory of a virtual environment (a Python
with uv, like the default image), stands for it; it is mounted at /opt/.image and comes first on
the `PATH`. Networking is the machine's."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

NAMESPACES = ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--mount-proc"]
ALLOWED = ("/opt/", "/tmp")

# Runs inside the namespaces: mounts what the spec says, then execs the container's command.
SETUP = r"""
import json, os, subprocess, sys
spec = json.loads(sys.argv[1])
def run(*args):
    subprocess.run(list(args), check=True)
run("mount", "--make-rprivate", "/")
run("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/opt")
os.makedirs("/opt/.host-dev")
run("mount", "--rbind", "/dev", "/opt/.host-dev")
run("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/dev")
for node in ("null", "zero", "full", "random", "urandom", "tty"):
    open("/dev/" + node, "w").close()
    run("mount", "--bind", "/opt/.host-dev/" + node, "/dev/" + node)
for directory in ("shm", "pts"):
    os.makedirs("/dev/" + directory)
    run("mount", "--rbind", "/opt/.host-dev/" + directory, "/dev/" + directory)
for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
    os.symlink(target, "/dev/" + name)
open("/dev/termination-log", "w").close()
run("mount", "--bind", spec["termination_log"], "/dev/termination-log")
run("mount", "--bind", spec["hosts"], "/etc/hosts")
# The image, mounted before the pod's /tmp hides whatever of the machine's lies there.
os.makedirs("/opt/.image")
run("mount", "--bind", spec["image"], "/opt/.image")
run("mount", "-o", "remount,bind,ro", "/opt/.image")
run("umount", "--lazy", "/opt/.host-dev")
os.rmdir("/opt/.host-dev")
tmp = None
for source, target, read_only in spec["mounts"]:
    if target == "/tmp":
        tmp = source
        continue
    os.makedirs(target, exist_ok=True)
    run("mount", "--bind", source, target)
    if read_only:
        run("mount", "-o", "remount,bind,ro", target)
if tmp:
    run("mount", "--bind", tmp, "/tmp")
os.chdir(spec["working_dir"])
os.execvpe(spec["command"][0], spec["command"], spec["env"])
"""


class CreateContainerConfigError(Exception):
    """What a kubelet reports when it cannot prepare a container's mounts."""


@dataclass
class Finished:
    exit_code: int
    output: str
    termination_message: str
    seconds: float


class PodRunner:
    def __init__(self, pod: dict, configmaps: dict[str, dict[str, str]], services: list[str], image_path: Path,
                 workdir: Path, claims: dict[str, Path] | None = None):
        self.pod = pod
        self.image_path = image_path
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.volumes: dict[str, Path] = {}
        self.read_only: set[str] = set()
        for volume in pod["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                self.volumes[volume["name"]] = (claims or {})[claim["claimName"]]
                self.volumes[volume["name"]].mkdir(parents=True, exist_ok=True)
                if claim.get("readOnly"):
                    self.read_only.add(volume["name"])
                continue
            path = workdir / "volumes" / volume["name"]
            path.mkdir(parents=True)
            if "configMap" in volume:
                for key, value in configmaps[volume["configMap"]["name"]].items():
                    (path / key).write_text(value)
                self.read_only.add(volume["name"])
            elif "emptyDir" not in volume:
                raise ValueError(f"volume {volume['name']}: only emptyDir, configMap and claimed volumes run here")
            self.volumes[volume["name"]] = path
        self.hosts = workdir / "hosts"
        names = " ".join(f"{s} {s}.cluster.local" for s in services)
        self.hosts.write_text(f"127.0.0.1 localhost {names}\n")

    def container(self, name: str) -> dict:
        spec = self.pod["spec"]
        return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)

    def _launch(self, container: dict, command: list[str] | None = None, **popen) -> tuple[subprocess.Popen, Path]:
        env = {"PATH": "/opt/.image/bin:/usr/local/bin:/usr/bin:/bin"}
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        expand = lambda part: re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), part)  # noqa: E731
        mounts = []
        for mount in sorted(container.get("volumeMounts", []), key=lambda m: m["mountPath"].count("/")):
            target = mount["mountPath"]
            if not target.startswith(ALLOWED):
                raise ValueError(f"container {container['name']}: the runner mounts under /opt and /tmp only, not {target}")
            volume = self.volumes[mount["name"]]
            source = volume / mount.get("subPath", "")
            if not source.exists():
                if mount["name"] in self.read_only:
                    raise CreateContainerConfigError(
                        f"failed to create subPath directory for volumeMount {mount['name']!r} "
                        f"of container {container['name']!r}")
                source.mkdir(mode=volume.stat().st_mode & 0o7777, parents=True)
            read_only = bool(mount.get("readOnly")) or mount["name"] in self.read_only
            mounts.append([str(source), target, read_only])
        log = self.workdir / f"{container['name']}.termination-log"
        log.write_text("")
        spec = {
            "termination_log": str(log), "hosts": str(self.hosts), "image": str(self.image_path.parent),
            "mounts": mounts, "env": env,
            "working_dir": container.get("workingDir", "/"),
            # A container's own command runs with its args, as the kubelet runs it.
            "command": [expand(part) for part in (command or container["command"] + container.get("args", []))],
        }
        process = subprocess.Popen(
            [*NAMESPACES, sys.executable, "-c", SETUP, json.dumps(spec)], start_new_session=True, **popen
        )
        return process, log

    def run(self, name: str, timeout: float = 300) -> Finished:
        """Runs a container to its end, as an init container runs."""
        container = self.container(name)
        started = time.monotonic()
        process, log = self._launch(container, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = process.communicate(timeout=timeout)
        finally:
            self.kill(process)
        seconds = time.monotonic() - started
        message = log.read_text()
        if process.returncode != 0 and not message and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = "\n".join(output.splitlines()[-80:])[-2048:]
        return Finished(process.returncode, output, message, seconds)

    def start(self, name: str, log: Path, command: list[str] | None = None) -> subprocess.Popen:
        """Starts a long-running container (with `command` instead of its own, when given); its
        output goes to `log`."""
        with log.open("w") as out:
            return self._launch(self.container(name), command=command, stdout=out, stderr=subprocess.STDOUT)[0]

    def probe(self, name: str) -> bool:
        """Runs the container's exec readiness probe once (in namespaces of its own, with the
        container's mounts and environment)."""
        container = self.container(name)
        process, _ = self._launch(container, command=container["readinessProbe"]["exec"]["command"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            return process.wait(timeout=container["readinessProbe"].get("timeoutSeconds", 1) + 5) == 0
        finally:
            self.kill(process)

    @staticmethod
    def pid_1(process: subprocess.Popen, timeout: float = 10) -> int:
        """The container's PID 1 (the child `unshare` forked), as seen from here."""
        deadline = time.monotonic() + timeout
        while True:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            if children:
                return int(children[0])
            if time.monotonic() > deadline:
                raise TimeoutError("the container never started")
            time.sleep(0.01)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
