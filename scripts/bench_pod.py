"""Measures a server's way to ready with its pod run for real: the pod a spawn writes (through
`scripts/dev --release`) is run by the tests' pod runner, with its packages and source from the
local package mirror and the broker stand-in on 127.0.0.1 (the API runs debug builds: it is
not what is measured), and prints, over RUNS runs (medians,
min and max, in seconds):
- fetch: the rexec-server source fetched and its SHA-256 checked;
- install (uv), install (pip): the server's own packages and `six` installed, one run each;
- server ready: from the server's start to the readiness probe passing (connected to the broker);
- stop: from SIGTERM to the server's processes gone;
- new environment: fetch + install (uv) + server ready, in sequence, as a new pod goes;
and the answer of a spawn right after a terminate (through the API and the Kubernetes stand-in).

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
    subprocess.run(["cargo", "build", "--quiet", "-p", "rexec-stand-ins", "--bins"], cwd=ROOT, check=True)
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
        get = lambda path: requests.get(  # noqa: E731
            f"{ready['cluster']}/api/v1/namespaces/{server['namespace']}/{path}",
            headers={"Authorization": "Bearer local"}, timeout=10,
        ).json()
        pod = get(f"pods/{server['name']}")
        labels = pod["metadata"]["labels"]
        build = f"env-{labels['rexec.ndp.io/environment']}-{labels['rexec.ndp.io/build']}"
        environments = f"{ready['cluster']}/api/v1/namespaces/rexec-environments"
        files = requests.get(f"{environments}/configmaps/{build}", headers={"Authorization": "Bearer local"}, timeout=10).json()
        job = requests.get(f"{environments.replace('/api/v1/', '/apis/batch/v1/')}/jobs/{build}",
                           headers={"Authorization": "Bearer local"}, timeout=10).json()
        image = ROOT / ".venv" / "pod" / "bin"
        services = ["rexec-broker.rexec.svc"]
        for run in range(RUNS):
            for installer in ("uv", "pip"):
                volume = work / f"{run}-{installer}-volume"
                builder = PodRunner(with_installer(job["spec"]["template"], installer), {build: files["data"]}, services,
                                    image, work / f"{run}-{installer}-build", claims={"rexec-environments": volume})
                built = builder.run("build")
                assert built.exit_code == 0, built.output
                note(f"build ({installer})", built.seconds)
                if installer == "pip":
                    continue
                runner = PodRunner(pod, {}, services, image, work / f"{run}-server", claims={"rexec-environments": volume})
                started = time.monotonic()
                assert runner.run("wait-for-environment").exit_code == 0
                process = runner.start("server", work / f"{run}-server.log")
                try:
                    until_ready(runner, process)
                    connected = time.monotonic() - started
                    note("server ready, built before", connected)
                    note("new environment", built.seconds + connected)
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
