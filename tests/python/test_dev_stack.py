"""The README's run command, scripted: it comes up, serves a spawn and a terminate, and stops
with nothing left behind."""

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


def test_make_dev_serves_and_stops_cleanly():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("AUTH_API_URL", "KUBECONFIG")}
    env["PORT"] = str(port)
    marker = f"REXEC_DEV_TEST={port}".encode()
    env["REXEC_DEV_TEST"] = str(port)
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "dev"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
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

        token = subprocess.run(
            ["make", "--no-print-directory", "token", "USER=alice"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        spawned = requests.post(
            f"{base}/rexec/spawn",
            data={"requirments": ["python==3.11", "numpy"], "force_reinstall": "False", "token": token},
            timeout=120,
        )
        assert spawned.status_code == 201, spawned.text
        assert spawned.json()["Username"] == "alice"
        terminated = requests.delete(f"{base}/rexec/terminate", data={"token": token}, timeout=120)
        assert terminated.json()["deleted"] is True
        running = "\n".join(processes_with(marker))
        for name in ("identity-service", "kube-stand-in", "cargo-lambda", "spawn-server"):
            assert name in running, f"{name} is not among the stack's processes:\n{running}"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 20
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(marker) == [], "processes left behind"
    for offset in (0, 1, 2):
        try:
            requests.get(f"http://127.0.0.1:{port + offset}/", timeout=2)
        except requests.ConnectionError:
            continue
        raise AssertionError(f"port {port + offset} still answers")
