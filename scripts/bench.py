"""Measures every route of the local stack and prints the figures of the README's performance
section: latency per route (release builds under `cargo lambda watch`, identity service and
Kubernetes stand-in on 127.0.0.1) and the peak resident memory of each function's process.

Run with the clients venv after `make dev` has installed it:
    PATH=.venv/tools/bin:$PATH .venv/clients/bin/python scripts/bench.py [REQUESTS_PER_ROUTE]
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command, **kwargs):
    return subprocess.Popen(command, cwd=ROOT, start_new_session=True, **kwargs)


def announced(binary):
    proc = start([str(ROOT / "target" / "debug" / binary)], stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def peak_memory_mib() -> dict[str, float]:
    """VmHWM of each running release function binary."""
    peaks = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            if "/target/release/" not in exe:
                continue
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    peaks[Path(exe).name] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return peaks


def measure(name, call):
    call()  # the first call starts the function
    times = []
    for _ in range(COUNT):
        started = time.perf_counter()
        resp = call()
        times.append((time.perf_counter() - started) * 1000)
        assert resp.status_code < 500, f"{name}: {resp.status_code} {resp.text}"
    times.sort()
    return name, statistics.median(times), times[int(len(times) * 0.95) - 1], times[-1]


def main():
    subprocess.run(["cargo", "build", "--quiet", "-p", "rexec-tests", "--bins"], cwd=ROOT, check=True)
    procs = []
    try:
        identity_proc, identity = announced("identity-service")
        cluster_proc, cluster = announced("kube-stand-in")
        procs += [identity_proc, cluster_proc]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            "AUTH_API_URL": identity["url"],
            "GROUP_NAMES": "/ndp_ep/ep-dev",
            "KUBECONFIG": cluster["kubeconfig"],
            "REXEC_DEPLOYMENT_API_URL": f"{base}/rexec",
        }
        command = ["cargo", "lambda", "watch", "--release", "--ignore-changes", "-A", "127.0.0.1", "-P", str(port)]
        for key, value in env.items():
            command += ["--env-var", f"{key}={value}"]
        watch = start(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(watch)
        deadline = time.monotonic() + 1800
        while True:
            try:
                if requests.get(f"{base}/api/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and watch.poll() is None, "the API did not come up"
            time.sleep(1)

        token = requests.post(identity["token_url"], json={"user": "alice"}, timeout=5).json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        spawn = {"requirments": ["python==3.11", "numpy>=1.26"], "force_reinstall": "False", "token": token}
        replace = dict(spawn, force_reinstall="True")
        rows = [
            measure("GET /api/health", lambda: requests.get(f"{base}/api/health")),
            measure("GET /api/status/", lambda: requests.get(f"{base}/api/status/")),
            measure("GET /api/status/rexec", lambda: requests.get(f"{base}/api/status/rexec", headers=bearer)),
            measure("POST /rexec/spawn (reuse)", lambda: requests.post(f"{base}/rexec/spawn", data=spawn)),
            measure("POST /rexec/spawn (replace)", lambda: requests.post(f"{base}/rexec/spawn", data=replace)),
            measure("GET /rexec/server", lambda: requests.get(f"{base}/rexec/server", headers=bearer)),
            measure("GET /rexec/broker-config", lambda: requests.get(f"{base}/rexec/broker-config", headers=bearer)),
            measure("GET /rexec/openapi.json", lambda: requests.get(f"{base}/rexec/openapi.json")),
        ]
        memory = peak_memory_mib()
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait(timeout=30)

    print(f"{COUNT} sequential requests per route, after one warm-up request")
    print(f"{'route':32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, p50, p95, worst in rows:
        print(f"{name:32} {p50:8.2f} {p95:8.2f} {worst:8.2f}")
    print()
    print(f"{'function':20} {'peak RSS MiB':>13}")
    for name, mib in sorted(memory.items()):
        print(f"{name:20} {mib:13.1f}")


if __name__ == "__main__":
    main()
