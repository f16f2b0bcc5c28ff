"""The README's run command, scripted: it comes up, serves a spawn and a terminate, uses the
identity service and cluster named by the environment when given, and stops with nothing left
behind."""

import contextlib
import os
import signal
import subprocess
import time

import requests

from conftest import ROOT, free_port


def processes_with(marker: bytes) -> list[str]:
    """The command lines of processes whose environment holds `marker` (descendants inherit it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if marker in environ.read().split(b"\0"):
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        args = cmdline.read().replace(b"\0", b" ").decode()
                    found.append(f"{pid}: {args}")
        except OSError:
            continue
    return found


def answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
        return True
    except requests.ConnectionError:
        return False


@contextlib.contextmanager
def make_dev(extra_env: dict[str, str]):
    """Runs `make dev` until it prints its ready line; yields (base URL, env, marker); then
    stops it with Ctrl-C and checks that nothing it started is left."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("AUTH_API_URL", "AUTH_API_METHOD", "KUBECONFIG", "GROUP_NAMES", "ENABLE_GROUP_BASED_ACCESS")}
    env.update(extra_env, PORT=str(port), REXEC_DEV_TEST=str(port))
    marker = f"REXEC_DEV_TEST={port}".encode()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "dev"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        for line in proc.stdout:
            if line.strip() == f"rexec-lambda ready: {base}":
                break
            assert time.monotonic() < deadline, "no ready line"
        else:
            raise AssertionError(f"make dev exited ({proc.wait()}) before it was ready")
        yield base, env, marker
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 20
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(marker) == [], "processes left behind"
    for offset in (0, 1, 2):
        assert not answers(port + offset), f"port {port + offset} still answers"


def spawn(base: str, token: str):
    return requests.post(
        f"{base}/rexec/spawn",
        data={"requirments": ["python==3.11", "numpy"], "force_reinstall": "False", "token": token},
        timeout=120,
    )


def test_make_dev_serves_and_stops_cleanly():
    with make_dev({}) as (base, env, marker):
        token = subprocess.run(
            ["make", "--no-print-directory", "token", "USER=alice"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        spawned = spawn(base, token)
        assert spawned.status_code == 201, spawned.text
        assert spawned.json()["Username"] == "alice"
        terminated = requests.delete(f"{base}/rexec/terminate", data={"token": token}, timeout=120)
        assert terminated.json()["deleted"] is True
        running = "\n".join(processes_with(marker))
        for name in ("identity-service", "kube-stand-in", "cargo-lambda", "spawn-server"):
            assert name in running, f"{name} is not among the stack's processes:\n{running}"


def test_make_dev_uses_the_identity_service_and_cluster_of_the_environment(identity, cluster):
    external = {
        "AUTH_API_URL": identity.url, "AUTH_API_METHOD": "POST", "KUBECONFIG": cluster["kubeconfig"],
        "ENABLE_GROUP_BASED_ACCESS": "false",
    }
    with make_dev(external) as (base, env, marker):
        port = int(env["PORT"])
        assert not answers(port + 1) and not answers(port + 2), "no helpers of its own"
        running = "\n".join(processes_with(marker))
        assert "identity-service" not in running and "kube-stand-in" not in running, running
        # eve: this stack admits every user (ENABLE_GROUP_BASED_ACCESS=false), and no other test
        # gives eve a server.
        token = identity.token("eve")
        spawned = spawn(base, token)
        assert spawned.status_code == 201, spawned.text
        namespace = spawned.json()["server"]["namespace"]
        assert requests.get(
            f"{cluster['url']}/api/v1/namespaces/{namespace}", headers={"Authorization": "Bearer local"}, timeout=10
        ).status_code == 200
        terminated = requests.delete(f"{base}/rexec/terminate", data={"token": token}, timeout=120)
        assert terminated.json()["deleted"] is True
