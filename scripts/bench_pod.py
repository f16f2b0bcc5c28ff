"""Measures a server's way to ready with its pod run for real: the pod and build Job a spawn
writes (through `scripts/dev` on the real control plane, which admitted them) are run by the
tests' pod runner with a kubelet's rules, with their packages and source from the local package
mirror and the broker stand-in on 127.0.0.1 (the API runs debug builds: it is not what is
measured), and prints, over RUNS runs (medians, min and max, in seconds):
- build (uv), build (pip): the source fetched and checked, the server's own packages and `six`
  installed, one run each;
- new environment: from the build's start, with the server's wait started beside it as a
  cluster starts both, to the server connected to the broker;
- server ready, built before: the wait and the server on a finished build, to connected;
- stop: from SIGTERM to the server's processes gone;
and the answer of a spawn right after a terminate (through the API and the control plane).

Run with the clients venv after `make test` has installed it (.venv/pod, .venv/mirror):
    PATH=.venv/tools/bin:$PATH .venv/clients/bin/python scripts/bench_pod.py [RUNS]
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(ROOT / "scripts"))

from bench import start_stack  # noqa: E402
from broker import Broker  # noqa: E402
from kube_admin import Admin  # noqa: E402
from package_mirror import Mirror  # noqa: E402
from pod_runner import PodRunner  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def with_installer(pod: dict, installer: str) -> dict:
    pod = json.loads(json.dumps(pod))
    for container in pod["spec"]["containers"]:
        for entry in container["env"]:
            if entry["name"] == "REXEC_INSTALLER":
                entry["value"] = installer
    return pod


def until_ready(runner: PodRunner, server: subprocess.Popen) -> None:
    started = time.monotonic()
    while not runner.probe("server"):
        if server.poll() is not None or time.monotonic() - started > 60:
            raise SystemExit("the server never became ready")
        time.sleep(0.05)


def main():
    subprocess.run(["cargo", "build", "--quiet", "-p", "rexec-stand-ins", "-p", "rexec-tests", "--bins"], cwd=ROOT, check=True)
    work = Path(tempfile.mkdtemp(prefix="rexec-bench-pod-"))
    mirror, broker = Mirror(work / "mirror"), Broker()
    stack, ready = start_stack({
        "REXEC_PACKAGE_INDEX_PROXY": mirror.index,
        "REXEC_SERVER_SOURCE": mirror.source,
        "REXEC_SERVER_SOURCE_SHA256": mirror.source_sha256,
        "REXEC_BROKER_PORT": str(broker.server_port),
    }, release=False)
    figures: dict[str, list[float]] = {}
    after_terminate = []
    note = lambda name, seconds: figures.setdefault(name, []).append(seconds)  # noqa: E731
    try:
        broker.identity_url = ready["identity"]
        token = requests.post(ready["token_url"], json={"user": "alice"}, timeout=5).json()["token"]
        spawn = {"requirments": ["python==3.11", "six"], "token": token}
        server = requests.post(f"{ready['ready']}/rexec/spawn", data=spawn, timeout=60).json()["server"]
        get = Admin(ready["kubeconfig"]).get
        pod = get(f"/api/v1/namespaces/{server['namespace']}/pods/{server['name']}")
        labels = pod["metadata"]["labels"]
        build = f"env-{labels['rexec.ndp.io/environment']}-{labels['rexec.ndp.io/build']}"
        files = get(f"/api/v1/namespaces/rexec-environments/configmaps/{build}")
        job = get(f"/apis/batch/v1/namespaces/rexec-environments/jobs/{build}")
        image = ROOT / ".venv" / "pod" / "bin"
        services = ["rexec-broker.rexec.svc"]
        for run in range(RUNS):
            for installer in ("uv", "pip"):
                volume = work / f"{run}-{installer}-volume"
                builder = PodRunner(with_installer(job["spec"]["template"], installer), {build: files["data"]}, services,
                                    image, work / f"{run}-{installer}-build", claims={"rexec-environments": volume})
                if installer == "pip":
                    built = builder.run("build")
                    assert built.exit_code == 0, built.output
                    note(f"build ({installer})", built.seconds)
                    continue
                # As a cluster starts them: the build's pod, and the server's beside it, whose
                # wait follows the build and ends with it.
                runner = PodRunner(pod, {}, services, image, work / f"{run}-server", claims={"rexec-environments": volume})
                started = time.monotonic()
                waiting = runner.start("wait-for-environment", work / f"{run}-wait.log")
                built = builder.run("build")
                assert built.exit_code == 0, built.output
                note(f"build ({installer})", built.seconds)
                assert waiting.wait(timeout=60) == 0, (work / f"{run}-wait.log").read_text()
                process = runner.start("server", work / f"{run}-server.log")
                try:
                    until_ready(runner, process)
                    note("new environment", time.monotonic() - started)
                finally:
                    PodRunner.kill(process)
                started = time.monotonic()
                assert runner.run("wait-for-environment").exit_code == 0
                process = runner.start("server", work / f"{run}-server.log")
                try:
                    until_ready(runner, process)
                    note("server ready, built before", time.monotonic() - started)
                    init = PodRunner.pid_1(process)
                    stopped = time.monotonic()
                    os.kill(init, signal.SIGTERM)
                    process.wait(timeout=30)
                    note("stop", time.monotonic() - stopped)
                finally:
                    PodRunner.kill(process)
            requests.delete(f"{ready['ready']}/rexec/terminate", data={"token": token}, timeout=60)
            after_terminate.append(requests.post(f"{ready['ready']}/rexec/spawn", data=spawn, timeout=60).status_code)
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(timeout=60)
        broker.stop()
        mirror.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{RUNS} runs, seconds              median    min    max")
    for name, values in figures.items():
        print(f"{name:<28} {statistics.median(values):7.2f} {min(values):6.2f} {max(values):6.2f}")
    print(f"spawn right after terminate: answered {sorted(set(after_terminate))} in {len(after_terminate)} runs")


if __name__ == "__main__":
    main()
