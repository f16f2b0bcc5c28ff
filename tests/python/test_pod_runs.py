"""What a spawn writes, run for real (tests/python/pod_runner.py): the environment's build Job
fetches the server source and installs from a local package mirror with uv or pip into its
directory of the shared volume; a requirement that cannot be installed fails the build with the
installer's own last lines, which the server's wait then reports; and a server on a finished
build starts without installing anything, connects to the broker, turns ready, answers a
published client's call, and stops on SIGTERM."""

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests
from rexec.client_api import remote_func

from broker import Broker
from conftest import ROOT, dev_stack, rendered
from package_mirror import Mirror
from pod_runner import CreateContainerConfigError, PodRunner

IMAGE = ROOT / ".venv" / "pod" / "bin"
SERVICES = ["rexec-broker.rexec.svc"]


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
def spawned(tmp_path_factory, mirror, broker, control_plane):
    """The server pod, its environment's build Job and the build's files, of a spawn through a
    stack whose builds take their packages and source from the mirror and whose servers connect
    to the broker stand-in."""
    settings = {
        "REXEC_PACKAGE_INDEX_PROXY": mirror.index,
        "REXEC_SERVER_SOURCE": mirror.source,
        "REXEC_SERVER_SOURCE_SHA256": mirror.source_sha256,
        "REXEC_BROKER_PORT": str(broker.server_port),
        # A caller of its own on the session's control plane.
        "IDENTITY_STAND_IN_USERS": "1",
    }
    log = tmp_path_factory.mktemp("stack") / "scripts-dev.log"
    with dev_stack(control_plane, settings, log) as stack:
        broker.identity_url = stack.ready["identity"]
        token = requests.post(stack.ready["token_url"], json={"user": "user-001"}, timeout=5).json()["token"]
        resp = requests.post(
            f"{stack.base}/rexec/spawn", data={"requirments": ["python==3.11", "six"], "token": token}, timeout=60
        )
        assert resp.status_code == 201, resp.text
        server = resp.json()["server"]
        get = control_plane.get
        pod = get(f"/api/v1/namespaces/{server['namespace']}/pods/{server['name']}")
        labels = pod["metadata"]["labels"]
        build = f"env-{labels['rexec.ndp.io/environment']}-{labels['rexec.ndp.io/build']}"
        yield {
            "pod": pod,
            "job": get(f"/apis/batch/v1/namespaces/rexec-environments/jobs/{build}"),
            "files": get(f"/api/v1/namespaces/rexec-environments/configmaps/{build}"),
            "token": token,
        }
        requests.delete(f"{stack.base}/rexec/terminate", data={"token": token}, timeout=60)


def builder(spawned, volume: Path, workdir: Path, installer=None, requirements=None, server_requirements=None) -> PodRunner:
    """The build Job's pod, on `volume` standing for the shared volume."""
    job = json.loads(json.dumps(spawned["job"]))
    template = job["spec"]["template"]
    files = dict(spawned["files"]["data"])
    for entry in template["spec"]["containers"][0]["env"]:
        if installer and entry["name"] == "REXEC_INSTALLER":
            # What REXEC_INSTALLER changes in the build, with its key (tested in Rust): pip is
            # given the server's own lines without their hashes.
            entry["value"] = installer
            if installer == "pip":
                files["server-requirements.txt"] = "".join(
                    line.split()[0] + "\n" for line in files["server-requirements.txt"].splitlines())
    if requirements is not None:
        # What the build's files hold for these requirement lines.
        files["requirements.txt"] = "".join(f"{line}\n" for line in requirements)
    if server_requirements is not None:
        files["server-requirements.txt"] = "".join(f"{line}\n" for line in server_requirements)
    name = spawned["files"]["metadata"]["name"]
    return PodRunner(template, {name: files}, SERVICES, IMAGE, workdir, claims={"rexec-environments": volume})


def server(spawned, volume: Path, workdir: Path) -> PodRunner:
    return PodRunner(spawned["pod"], {}, SERVICES, IMAGE, workdir, claims={"rexec-environments": volume})


def directory(spawned, volume: Path) -> Path:
    return volume / spawned["pod"]["spec"]["containers"][0]["volumeMounts"][0]["subPath"]


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_build_installs_the_environment_from_the_mirror(spawned, tmp_path, installer):
    volume = tmp_path / "volume"
    built = builder(spawned, volume, tmp_path / "build", installer=installer).run("build")
    assert built.exit_code == 0, built.output
    versions = json.loads(built.termination_message)
    assert versions["scidx-rexec"] == "0.1.0" and versions["dill"] and versions["python"].startswith("3.11")
    env = directory(spawned, volume)
    assert json.loads((env / ".complete").read_text()) == versions
    assert (env / "server" / "run_server.py").is_file()
    assert (env / "packages" / "six.py").is_file() and (env / "packages" / "zmq").is_dir()
    assert not (env / ".cache").exists(), "the installer's cache does not stay"
    print(f"\n{installer}: build {built.seconds:.2f} s")


def test_a_source_that_does_not_match_its_sha256_is_refused(spawned, tmp_path):
    volume = tmp_path / "volume"
    pod = builder(spawned, volume, tmp_path / "build")
    for entry in pod.container("build")["env"]:
        if entry["name"] == "REXEC_SERVER_SOURCE_SHA256":
            entry["value"] = "0" * 64
    refused = pod.run("build")
    assert refused.exit_code != 0
    assert "is not REXEC_SERVER_SOURCE_SHA256" in refused.termination_message
    env = directory(spawned, volume)
    assert "is not REXEC_SERVER_SOURCE_SHA256" in (env / ".failed").read_text()
    assert not (env / "server").exists()


def test_a_build_over_its_size_bound_fails_and_is_emptied(spawned, tmp_path):
    volume = tmp_path / "volume"
    pod = builder(spawned, volume, tmp_path / "build")
    for entry in pod.container("build")["env"]:
        if entry["name"] == "REXEC_BUILD_MAX_BYTES":
            entry["value"] = str(1 << 20)
    over = pod.run("build")
    assert over.exit_code != 0
    assert "more than REXEC_BUILD_MAX_SIZE allows (1048576)" in over.termination_message, over.termination_message
    env = directory(spawned, volume)
    assert sorted(p.name for p in env.iterdir()) == [".failed"], "emptied, but for the marker"
    waited = server(spawned, volume, tmp_path / "server").run("wait-for-environment", timeout=30)
    assert waited.exit_code != 0
    assert "REXEC_BUILD_MAX_SIZE" in waited.termination_message


def test_a_hashed_requirement_is_verified_and_the_unhashed_ones_are_installed_as_before(spawned, tmp_path):
    """A line the policy accepted with its hash (as Requirements::file writes it): uv checks the
    file it fetched against it; the server's own requirements, hashed too, install as before."""
    wheel = next((ROOT / ".venv" / "mirror").glob("six-*.whl"))
    version = wheel.name.split("-")[1]
    right = hashlib.sha256(wheel.read_bytes()).hexdigest()
    built = builder(spawned, tmp_path / "right", tmp_path / "build-right",
                    requirements=[f"six=={version} --hash=sha256:{right}"]).run("build")
    assert built.exit_code == 0, built.output
    wrong = builder(spawned, tmp_path / "wrong", tmp_path / "build-wrong",
                    requirements=[f"six=={version} --hash=sha256:{'0' * 64}"]).run("build")
    assert wrong.exit_code != 0
    assert "hash mismatch" in wrong.termination_message.lower(), wrong.termination_message


def test_the_servers_own_packages_are_installed_only_as_their_hashes_say(spawned, tmp_path):
    """The build's server-requirements.txt pins every package of the server with its hashes, and
    uv refuses a file that matches none of them: here dill's, its hashes replaced."""
    lines = spawned["files"]["data"]["server-requirements.txt"].splitlines()
    assert lines and all(" --hash=sha256:" in line for line in lines), "each line hashed"
    tampered = [line.split()[0] + f" --hash=sha256:{'0' * 64}" if line.startswith("dill==") else line for line in lines]
    refused = builder(spawned, tmp_path / "volume", tmp_path / "build", server_requirements=tampered).run("build")
    assert refused.exit_code != 0
    assert "hash mismatch" in refused.termination_message.lower() and "dill" in refused.termination_message
    print(refused.termination_message)


def test_a_build_never_writes_a_directory_written_before(spawned, tmp_path):
    volume = tmp_path / "volume"
    env = directory(spawned, volume)
    env.mkdir(parents=True)
    (env / ".complete").write_text("{}")
    refused = builder(spawned, volume, tmp_path / "build").run("build")
    assert refused.exit_code != 0
    assert "not empty" in refused.termination_message
    assert sorted(p.name for p in env.iterdir()) == [".complete"] and (env / ".complete").read_text() == "{}"


def test_a_cleanup_removes_the_builds_it_names_and_nothing_else(tmp_path):
    volume = tmp_path / "volume"
    key, other = "a" * 64, "b" * 64
    for n in ("1", "2", "3"):
        (volume / key / n / "packages").mkdir(parents=True)
        (volume / key / n / ".complete").write_text("{}")
    (volume / other / "1").mkdir(parents=True)
    job = rendered("cleanup", "aaaa", key, "2", "python:3.11-slim@sha256:" + "0" * 64)
    done = PodRunner(job["spec"]["template"], {}, SERVICES, IMAGE, tmp_path / "clean",
                     claims={"rexec-environments": volume}).run("clean")
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in (volume / key).iterdir()) == ["3"], "builds 1 and 2 gone, 3 kept"
    assert (volume / other / "1").is_dir(), "another environment untouched"


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_a_failed_build_is_reported_by_the_server_with_the_installers_lines(spawned, tmp_path, installer):
    volume = tmp_path / "volume"
    failed = builder(spawned, volume, tmp_path / "build", installer=installer, requirements=["nosuchpkg-rexec"]).run("build")
    assert failed.exit_code != 0
    assert "nosuchpkg-rexec" in failed.termination_message, failed.termination_message
    assert len(failed.termination_message) <= 3000
    waited = server(spawned, volume, tmp_path / "server").run("wait-for-environment", timeout=30)
    assert waited.exit_code != 0
    assert "nosuchpkg-rexec" in waited.termination_message


def test_the_wait_for_a_build_follows_its_steps_and_the_installers_lines(spawned, tmp_path):
    volume = tmp_path / "volume"
    output = tmp_path / "wait.log"
    waiting = server(spawned, volume, tmp_path / "server").start("wait-for-environment", output)
    try:
        built = builder(spawned, volume, tmp_path / "build").run("build")
        assert built.exit_code == 0, built.output
        assert waiting.wait(timeout=30) == 0, output.read_text()
    finally:
        PodRunner.kill(waiting)
    lines = output.read_text().splitlines()
    # The steps GET /rexec/server reads from the tail of this log (status::STEP_*).
    assert [line for line in lines if line.startswith("rexec: ")] == [
        "rexec: waiting for the environment's build",
        "rexec: fetching the rexec-server source",
        "rexec: installing the requirements with uv",
    ]
    installing = lines.index("rexec: installing the requirements with uv")
    assert any(line.startswith("Installed ") for line in lines[installing:]), lines
    assert (directory(spawned, volume) / ".log").read_text().splitlines() == lines[1:], "the build's own log"


def test_the_wait_starts_before_its_build_as_a_kubelet_starts_it(spawned, tmp_path):
    """A kubelet makes the build's missing directory for the wait only because the pod's volume
    is writable (every mount of it read-only): marked read-only, the wait could not start before
    the build, and a kubelet would retry it 10 s later."""
    volume = tmp_path / "volume"
    pod = server(spawned, volume, tmp_path / "server")
    assert all(m["readOnly"] for c in pod.pod["spec"]["initContainers"] + pod.pod["spec"]["containers"]
               for m in c["volumeMounts"] if m["name"] == "environment")
    waiting = pod.start("wait-for-environment", tmp_path / "wait.log")
    try:
        deadline = time.monotonic() + 10
        while "waiting for the environment's build" not in (tmp_path / "wait.log").read_text():
            assert waiting.poll() is None and time.monotonic() < deadline, (tmp_path / "wait.log").read_text()
            time.sleep(0.05)
        assert directory(spawned, volume).is_dir() and not any(directory(spawned, volume).iterdir())
    finally:
        PodRunner.kill(waiting)
    read_only = json.loads(json.dumps(spawned["pod"]))
    read_only["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] = True
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(CreateContainerConfigError, match="failed to create subPath directory"):
        PodRunner(read_only, {}, SERVICES, IMAGE, tmp_path / "ro", claims={"rexec-environments": elsewhere}).start(
            "wait-for-environment", tmp_path / "ro.log")
    assert list(elsewhere.iterdir()) == [], "nothing made on a read-only volume"


def test_a_server_on_a_finished_build_installs_nothing_connects_answers_and_stops(spawned, broker, tmp_path):
    volume = tmp_path / "volume"
    assert builder(spawned, volume, tmp_path / "build").run("build").exit_code == 0
    before = sorted(p.name for p in (directory(spawned, volume) / "packages").iterdir())
    pod = server(spawned, volume, tmp_path / "server")
    waited = pod.run("wait-for-environment", timeout=30)
    assert waited.exit_code == 0 and json.loads(waited.termination_message)["scidx-rexec"] == "0.1.0"
    assert not pod.probe("server"), "not ready before the server runs"
    process = pod.start("server", tmp_path / "server.log")
    try:
        deadline = time.monotonic() + 30
        while not pod.probe("server"):
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        remote_func.set_remote_addr("127.0.0.1")
        remote_func.set_remote_port(str(broker.client_port))
        remote_func.set_exec_token(spawned["token"])
        # Defined as in a notebook (in __main__), so that dill sends it by value.
        notebook = {"__name__": "__main__"}
        exec("def add_one(x):\n    return x + 1\n", notebook)
        assert remote_func(notebook["add_one"])(41) == 42
        os.kill(PodRunner.pid_1(process), signal.SIGTERM)
        assert process.wait(timeout=5) == 128 + signal.SIGTERM
        assert not pod.probe("server")
    finally:
        PodRunner.kill(process)
    after = sorted(p.name for p in (directory(spawned, volume) / "packages").iterdir())
    assert after == before, "the server left the shared environment as it was"
