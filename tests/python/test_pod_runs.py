"""The pod a spawn writes, run for real (tests/python/pod_runner.py): its init containers fetch
the server source and build the environment from a local package mirror with uv or pip, a
requirement that cannot be installed fails with the installer's own last lines, and the server
connects to the broker, turns ready, answers a published client's call, and stops on SIGTERM."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from rexec.client_api import remote_func

from broker import Broker
from conftest import ROOT, running_stack
from package_mirror import Mirror
from pod_runner import PodRunner

IMAGE = ROOT / ".venv" / "pod" / "bin"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    served = Mirror(tmp_path_factory.mktemp("mirror"))
    yield served
    served.stop()


@pytest.fixture(scope="module")
def broker():
    running = Broker()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory, mirror, broker):
    """The pod, claim and caller of a spawn through a stack whose servers take their packages
    and source from the mirror and connect to the broker stand-in."""
    settings = {
        "REXEC_PACKAGE_INDEX_PROXY": mirror.index,
        "REXEC_SERVER_SOURCE": mirror.source,
        "REXEC_SERVER_SOURCE_SHA256": mirror.source_sha256,
        "REXEC_BROKER_PORT": str(broker.server_port),
    }
    log = tmp_path_factory.mktemp("stack") / "scripts-dev.log"
    with running_stack([str(ROOT / "scripts" / "dev"), "--ignore-changes"], settings, log) as stack:
        broker.identity_url = stack.ready["identity"]
        token = requests.post(stack.ready["token_url"], json={"user": "alice"}, timeout=5).json()["token"]
        resp = requests.post(
            f"{stack.base}/rexec/spawn", data={"requirments": ["python==3.11", "six"], "token": token}, timeout=60
        )
        assert resp.status_code == 201, resp.text
        server = resp.json()["server"]
        get = lambda path: requests.get(  # noqa: E731
            f"{stack.ready['cluster']}/api/v1/namespaces/{server['namespace']}/{path}",
            headers={"Authorization": "Bearer local"}, timeout=10,
        ).json()
        yield {"pod": get(f"pods/{server['name']}"), "claim": get("configmaps/rexec-server"), "token": token}


def runner(spawned, tmp_path, installer=None, requirements=None) -> PodRunner:
    pod = json.loads(json.dumps(spawned["pod"]))
    data = dict(spawned["claim"]["data"])
    if installer:
        # What REXEC_INSTALLER changes in the pod, and all it changes.
        install = next(c for c in pod["spec"]["initContainers"] if c["name"] == "install")
        for entry in install["env"]:
            if entry["name"] == "REXEC_INSTALLER":
                entry["value"] = installer
    if requirements is not None:
        # What the claim holds for these requirement lines.
        data["requirements.txt"] = "".join(f"{line}\n" for line in requirements)
    services = ["rexec-broker.rexec.svc"]
    return PodRunner(pod, {"rexec-server": data}, services, IMAGE, tmp_path)


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_the_init_containers_build_the_environment_from_the_mirror(spawned, tmp_path, installer):
    pod = runner(spawned, tmp_path, installer=installer)
    fetched = pod.run("fetch-server")
    assert fetched.exit_code == 0, fetched.output
    assert (pod.volumes["rexec"] / "server" / "run_server.py").is_file()
    built = pod.run("install")
    assert built.exit_code == 0, built.output
    versions = json.loads(built.termination_message)
    assert versions["scidx-rexec"] == "0.1.0" and versions["dill"] and versions["python"].startswith("3.11")
    packages = pod.volumes["rexec"] / "packages"
    assert (packages / "six.py").is_file() and (packages / "zmq").is_dir()
    print(f"\n{installer}: install step {built.seconds:.2f} s")


def test_a_source_that_does_not_match_its_sha256_is_refused(spawned, tmp_path):
    pod = runner(spawned, tmp_path)
    fetch = pod.container("fetch-server")
    for entry in fetch["env"]:
        if entry["name"] == "REXEC_SERVER_SOURCE_SHA256":
            entry["value"] = "0" * 64
    refused = pod.run("fetch-server")
    assert refused.exit_code != 0
    assert "is not REXEC_SERVER_SOURCE_SHA256" in refused.termination_message
    assert not (pod.volumes["rexec"] / "server" / "run_server.py").exists()


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_requirement_that_cannot_be_installed_fails_with_the_installers_lines(spawned, tmp_path, installer):
    pod = runner(spawned, tmp_path, installer=installer, requirements=["nosuchpkg-rexec"])
    assert pod.run("fetch-server").exit_code == 0
    failed = pod.run("install")
    assert failed.exit_code != 0
    assert "nosuchpkg-rexec" in failed.termination_message, failed.termination_message
    assert len(failed.termination_message) <= 3000


def test_the_server_connects_turns_ready_answers_and_stops_on_sigterm(spawned, broker, tmp_path):
    pod = runner(spawned, tmp_path)
    assert pod.run("fetch-server").exit_code == 0
    assert pod.run("install").exit_code == 0
    assert not pod.probe("server"), "not ready before the server runs"
    server = pod.start("server", tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 30
        while not pod.probe("server"):
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        remote_func.set_remote_addr("127.0.0.1")
        remote_func.set_remote_port(str(broker.client_port))
        remote_func.set_exec_token(spawned["token"])
        # Defined as in a notebook (in __main__), so that dill sends it by value.
        notebook = {"__name__": "__main__"}
        exec("def add_one(x):\n    return x + 1\n", notebook)
        assert remote_func(notebook["add_one"])(41) == 42
        init = int(Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()[0])
        os.kill(init, signal.SIGTERM)
        assert server.wait(timeout=5) == 128 + signal.SIGTERM
        assert not pod.probe("server")
    finally:
        PodRunner.kill(server)
