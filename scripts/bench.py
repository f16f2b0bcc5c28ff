"""Measures every route of the local stack and prints the figures of docs/performance.md:
latency per route (release builds under `cargo lambda watch`, identity service and Kubernetes
stand-in on 127.0.0.1, all started by `scripts/dev --release`) and the peak resident memory of
each function's process.

Run with the clients venv after `make dev` has installed it:
    PATH=.venv/tools/bin:$PATH .venv/clients/bin/python scripts/bench.py [REQUESTS_PER_ROUTE]
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 200


def start_stack(settings: dict[str, str] | None = None, release: bool = True, stand_in: bool = False):
    """Starts `scripts/dev` (`--release` unless told otherwise, with `settings` in its
    environment; on the Kubernetes stand-in when told, else on the real control plane) and
    returns (its process, its JSON ready line)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AUTH_API_URL", "KUBECONFIG")}
    env.update(settings or {}, PORT="0")
    flags = [*(["--release"] if release else []), *(["--stand-in"] if stand_in else []), "--ignore-changes"]
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "dev"), *flags],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    for line in proc.stdout:
        if line.startswith("{") and '"ready"' in line:
            # Keep reading its output, so that it never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, json.loads(line)
    raise SystemExit(f"scripts/dev exited ({proc.wait()}) before it was ready")


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
    subprocess.run(["cargo", "build", "--quiet", "-p", "rexec-stand-ins", "-p", "rexec-tests", "--bins"], cwd=ROOT, check=True)
    # The functions' own latency: on the stand-in, which answers at once.
    stack, ready = start_stack(stand_in=True)
    try:
        base = ready["ready"]
        token = requests.post(ready["token_url"], json={"user": "alice"}, timeout=5).json()["token"]
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
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(timeout=60)

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
