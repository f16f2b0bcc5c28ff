"""The server container's commands, exactly as a spawn writes them, run for real: the wrapper
that makes SIGTERM stop the server (as PID 1 of its own PID namespace, as in a container), and
the readiness probe that says ready only once the pod holds a connection to the broker."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

# A stand-in for SciDx-rexec-server's run_server.py: it installs no SIGTERM handler, runs a call
# in a child process, and records both process ids.
FAKE_SERVER = """
import os, subprocess, sys, time
call = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open("pids", "w") as f:
    f.write(f"{os.getpid()} {call.pid}")
while True:
    time.sleep(1)
"""


def in_own_pid_namespace() -> list[str]:
    """A prefix that runs a command as PID 1 of a new PID namespace, without privileges."""
    prefix = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("unprivileged user and PID namespaces are not available here")
    return prefix


@pytest.fixture(scope="module")
def server_container(api, identity, cluster):
    """The server container of a pod a spawn wrote."""
    token = identity.token("bob")
    resp = requests.post(
        f"{api.rexec}/spawn", data={"requirments": ["python==3.11"], "token": token}, timeout=60
    )
    assert resp.status_code in (200, 201), resp.text
    server = resp.json()["server"]
    pod = requests.get(
        f"{cluster['url']}/api/v1/namespaces/{server['namespace']}/pods/{server['name']}",
        headers={"Authorization": "Bearer local"},
        timeout=10,
    ).json()
    yield pod["spec"]["containers"][0]
    requests.delete(f"{api.rexec}/terminate", data={"token": token}, timeout=60)


def expand(container: dict) -> tuple[list[str], dict[str, str]]:
    """The command with Kubernetes' `$(VAR)` expansion from the container's env, and that env."""
    env = {e["name"]: e["value"] for e in container["env"]}
    command = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], part) for part in container["command"]]
    return command, env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def start_as_pid_1(command: list[str], env: dict, cwd: Path) -> tuple[subprocess.Popen, int]:
    """Starts `command` as PID 1 of its own namespace; the process and the ids the fake server
    recorded (its own and its call's), as seen from here."""
    runner = subprocess.Popen(
        [*in_own_pid_namespace(), *command],
        cwd=cwd,
        env={**os.environ, **env, "PATH": os.path.dirname(sys.executable) + ":" + os.environ["PATH"]},
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not (cwd / "pids").exists():
        assert time.monotonic() < deadline, "the fake server never started"
        time.sleep(0.05)
    children = Path(f"/proc/{runner.pid}/task/{runner.pid}/children").read_text().split()
    return runner, int(children[0])


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "run_server.py").write_text(FAKE_SERVER)
    return tmp_path


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


def test_as_pid_1_the_bare_server_ignores_sigterm(workdir, server_container):
    _, env = expand(server_container)
    runner, init = start_as_pid_1([sys.executable, "run_server.py"], env, workdir)
    try:
        os.kill(init, signal.SIGTERM)
        time.sleep(1)
        assert alive(init), "the premise: PID 1 without a handler ignores SIGTERM"
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()


def test_the_wrapper_stops_the_server_and_its_calls_on_sigterm(workdir, server_container):
    command, env = expand(server_container)
    assert command[:2] == ["python", "-c"] and command[-2:] == ["--broker_port", env["REXEC_BROKER_PORT"]]
    assert command[3] == env["REXEC_BROKER_ADDR"]
    runner, init = start_as_pid_1([sys.executable, *command[1:]], env, workdir)
    try:
        below = descendants(init)
        assert len(below) == 2, "the server and its call run under the wrapper"
        os.kill(init, signal.SIGTERM)
        # The wrapper reports how the server ended: by SIGTERM, 128 + 15.
        assert runner.wait(timeout=5) == 128 + signal.SIGTERM
        assert not any(alive(pid) for pid in [init, *below])
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()


def test_ready_only_with_a_connection_to_the_broker(server_container):
    probe = server_container["readinessProbe"]["exec"]["command"]
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
