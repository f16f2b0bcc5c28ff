"""The server container's commands, exactly as a spawn writes them, run by the pod runner as PID 1
of their own PID namespace, as in a container: the wrapper that makes SIGTERM stop the server
and the calls it runs, and the readiness probe that says ready only once the pod holds a
connection to the broker."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from pod_runner import PodRunner

# A stand-in for SciDx-rexec-server's run_server.py: it installs no SIGTERM handler, runs a call
# in a child process, and records both process ids.
FAKE_SERVER = """
import os, subprocess, sys, time
call = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open("/tmp/pids", "w") as f:
    f.write(f"{os.getpid()} {call.pid}")
while True:
    time.sleep(1)
"""


@pytest.fixture(scope="module")
def pod(api, identity, control_plane):
    """The pod a spawn wrote."""
    token = identity.token("bob")
    resp = requests.post(
        f"{api.rexec}/spawn", data={"requirments": ["python==3.11"], "token": token}, timeout=60
    )
    assert resp.status_code in (200, 201), resp.text
    server = resp.json()["server"]
    yield control_plane.get(f"/api/v1/namespaces/{server['namespace']}/pods/{server['name']}")
    requests.delete(f"{api.rexec}/terminate", data={"token": token}, timeout=60)


@pytest.fixture
def runner(pod, tmp_path):
    """The pod on a volume whose environment holds the fake server."""
    volume = tmp_path / "volume"
    server = pod["spec"]["containers"][0]
    environment = volume / server["volumeMounts"][0]["subPath"] / "server"
    environment.mkdir(parents=True)
    (environment / "run_server.py").write_text(FAKE_SERVER)
    return PodRunner(pod, {}, [], Path(sys.executable).parent, tmp_path / "pod", claims={"rexec-environments": volume})


def started(runner: PodRunner, tmp_path: Path, command=None) -> tuple[subprocess.Popen, int, list[int]]:
    """The server container started: its process, its PID 1 and the fake server's process ids,
    as seen from here."""
    process = runner.start("server", tmp_path / "server.log", command=command)
    init = PodRunner.pid_1(process)
    pids = runner.volumes["tmp"] / "pids"
    deadline = time.monotonic() + 20
    while not pids.exists():
        assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
        time.sleep(0.05)
    return process, init, descendants(init)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def descendants(pid_1: int) -> list[int]:
    """Every process below `pid_1`, as seen from here."""
    found, todo = [], [pid_1]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found.append(int(child))
                todo.append(int(child))
    return found


def test_as_pid_1_the_bare_server_ignores_sigterm(runner, tmp_path):
    process, init, _ = started(runner, tmp_path, command=["python", "run_server.py"])
    try:
        os.kill(init, signal.SIGTERM)
        time.sleep(1)
        assert alive(init), "the premise: PID 1 without a handler ignores SIGTERM"
    finally:
        PodRunner.kill(process)


def test_the_wrapper_stops_the_server_and_its_calls_on_sigterm(runner, tmp_path):
    command = runner.container("server")["command"]
    assert command[:2] == ["python", "-c"] and command[3:] == ["$(REXEC_BROKER_ADDR)", "--broker_port", "$(REXEC_BROKER_PORT)"]
    process, init, below = started(runner, tmp_path)
    try:
        assert len(below) == 2, "the server and its call run under the wrapper"
        os.kill(init, signal.SIGTERM)
        # The wrapper reports how the server ended: by SIGTERM, 128 + 15.
        assert process.wait(timeout=5) == 128 + signal.SIGTERM
        assert not any(alive(pid) for pid in [init, *below])
    finally:
        PodRunner.kill(process)


def test_ready_only_with_a_connection_to_the_broker(pod):
    probe = pod["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["python", "-c"]
    broker = socket.create_server(("127.0.0.1", 0))
    port = broker.getsockname()[1]
    env = {**os.environ, "REXEC_BROKER_PORT": str(port)}
    run = lambda: subprocess.run([sys.executable, *probe[1:]], env=env, capture_output=True, text=True)  # noqa: E731
    try:
        before = run()
        assert before.returncode != 0
        assert before.stderr.strip() == "no established connection to the broker"
        server = socket.create_connection(("127.0.0.1", port))
        accepted, _ = broker.accept()
        assert run().returncode == 0
        server.close()
        accepted.close()
        time.sleep(0.1)
        assert run().returncode != 0, "a connection that closed is not ready"
    finally:
        broker.close()
