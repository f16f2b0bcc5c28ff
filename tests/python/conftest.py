"""Fixtures that run the system locally for the published Python clients.

`identity` starts the identity-service stand-in (target/debug/identity-service), `cluster` the
Kubernetes stand-in (target/debug/kube-stand-in); `api` starts `cargo lambda watch` with the
workspace router on a free 127.0.0.1 port, pointed at both. All stop, with every child process,
when the session ends.
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_GROUP = "/ndp_ep/ep-dev"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def announced(binary: str):
    """Starts a test-support binary and yields (its process, the JSON line it prints once it listens)."""
    proc = subprocess.Popen(
        [str(ROOT / "target" / "debug" / binary)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        stop(proc)


class Identity:
    def __init__(self, url: str, token_url: str):
        self.url = url
        self.token_url = token_url

    def token(self, user: str) -> str:
        resp = requests.post(self.token_url, json={"user": user}, timeout=5)
        resp.raise_for_status()
        return resp.json()["token"]


@pytest.fixture(scope="session")
def identity():
    for service in announced("identity-service"):
        yield Identity(service["url"], service["token_url"])


@pytest.fixture(scope="session")
def cluster():
    """The Kubernetes stand-in; yields its announcement (url, kubeconfig)."""
    for stand_in in announced("kube-stand-in"):
        yield stand_in
        Path(stand_in["kubeconfig"]).unlink(missing_ok=True)


class Api:
    def __init__(self, base: str):
        self.base = base
        self.ndp = f"{base}/api"
        self.rexec = f"{base}/rexec"


@pytest.fixture(scope="session")
def api(identity, cluster, tmp_path_factory):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env_vars = {
        "AUTH_API_URL": identity.url,
        "GROUP_NAMES": ALLOWED_GROUP,
        "REXEC_DEPLOYMENT_API_URL": f"{base}/rexec",
        "KUBECONFIG": cluster["kubeconfig"],
        "KUBE_TIMEOUT_SECONDS": "5",
    }
    command = ["cargo", "lambda", "watch", "-A", "127.0.0.1", "-P", str(port), "--ignore-changes"]
    for key, value in env_vars.items():
        command += ["--env-var", f"{key}={value}"]
    log = (tmp_path_factory.mktemp("watch") / "cargo-lambda-watch.log").open("w")
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 900
        while True:
            assert proc.poll() is None, f"cargo lambda watch exited; see {log.name}"
            try:
                if requests.get(f"{base}/api/health", timeout=60).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the API did not come up; see {log.name}"
            time.sleep(1)
        yield Api(base)
    finally:
        stop(proc)
        log.close()
