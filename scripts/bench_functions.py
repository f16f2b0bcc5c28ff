"""Builds the release binaries and prints one table of what a function costs on Lambda:

- cold start: from exec to the first answer under a Lambda Runtime API stub on 127.0.0.1, split
  into init (exec to the runtime's first request for an event: settings read, clients built)
  and the first invocation (its event to its answer: first connections included), median, min
  and max over RUNS fresh processes;
- warm: the median time of an invocation over WARM invocations in one process, its peak resident
  memory (VmHWM) after them, and the binary's size;
- the Kubernetes requests a spawn makes, and how many of them it waits on in sequence, for a new,
  a reused and a replaced server, counted by the Kubernetes stand-in (every answer delayed
  40 ms, so requests made together are seen together), and the identity service's calls.

The identity service and the Kubernetes stand-in are the release builds of stand-ins/, on
127.0.0.1; the functions get the settings `scripts/dev` gives them, and reach the stand-in as
they reach EKS on Lambda (they read no kubeconfig): `DescribeCluster` answered by a stub on
127.0.0.1 (`AWS_ENDPOINT_URL_EKS`), and an EKS token signed with the environment's credentials,
which the stand-in checks.

    python3 scripts/bench_functions.py [RUNS] [WARM]     (defaults: 9 and 1000)
"""

import base64
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parents[1]
RELEASE = ROOT / "target" / "release"
API = "/2018-06-01/runtime"
ANSWER_WITHIN = 30  # seconds: API Gateway's limit, and then some

# Each function with its event (events/) and who calls it. The order matters: spawn-server
# makes alice's server before the functions that read it, delete-server and the reaper come last.
FUNCTIONS = [
    ("get-health", "get-health", None),
    ("get-status", "get-status", None),
    ("serve-ndp-docs", "serve-ndp-docs", None),
    ("serve-rexec-docs", "serve-rexec-docs", None),
    ("get-rexec-status", "get-rexec-status", "alice"),
    ("get-broker-config", "get-broker-config", "alice"),
    ("spawn-server", "spawn-server", "alice"),
    ("get-server", "get-server", "alice"),
    ("list-servers", "list-servers", "bob"),
    ("delete-server", "delete-server", "alice"),
    ("reap-servers", "reap-servers", None),
]


class RuntimeApi:
    """The Lambda Runtime API, as far as a function's runtime uses it: events handed out one at
    a time, answers and errors taken, with the time of each step."""

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.answers: queue.Queue = queue.Queue()
        self.first_poll: float | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{API}/invocation/next":
                    return self.reply(404)
                if stub.first_poll is None:
                    stub.first_poll = time.perf_counter()
                event = stub.events.get()
                request_id = str(uuid.uuid4())
                deadline = int((time.time() + ANSWER_WITHIN) * 1000)
                stub.sent = time.perf_counter()
                self.reply(200, event, [
                    ("Content-Type", "application/json"),
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                    ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                    ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
                ])

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received = time.perf_counter()
                self.reply(202)
                kind = self.path.rsplit("/", 1)[-1]
                stub.answers.put((kind, received - stub.sent, received, body))

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a function ended while it waited for its next event

        self.server = Server(("127.0.0.1", 0), Handler)
        self.sent = 0.0
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def answer(self):
        kind, took, received, body = self.answers.get(timeout=ANSWER_WITHIN)
        if kind != "response":
            raise SystemExit(f"the function answered {kind}: {body[:300]!r}")
        status, _ = gateway_answer(body)
        if status >= 500:
            raise SystemExit(f"the function answered {status}: {body[:300]!r}")
        return took, received, status

    def close(self):
        self.server.shutdown()


def gateway_answer(body: bytes) -> tuple[int, str]:
    """(status, body) of the answer API Gateway makes of a function's response."""
    answer = json.loads(body) if body.startswith(b"{") else {}
    text = answer.get("body") or ""
    if answer.get("isBase64Encoded"):
        text = base64.b64decode(text).decode(errors="replace")
    return answer.get("statusCode", 200), text


def start(binary, args=(), env=None):
    """Starts a stand-in and returns (its process, the JSON line it prints once it listens)."""
    proc = subprocess.Popen([str(RELEASE / binary), *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"{binary} exited ({proc.wait()})")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, json.loads(line)


def stop(proc):
    """Ends a process we started, by its id."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# What the Lambda runtime gives a function, and the EKS cluster the stand-in stands for.
AWS = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
EKS_CLUSTER = "rexec-bench"


def describe_cluster_stub(endpoint: str) -> ThreadingHTTPServer:
    """eks:DescribeCluster of EKS_CLUSTER on 127.0.0.1: `endpoint`, and a certificate authority
    (the system bundle's first: the endpoint is plain HTTP on the loopback interface)."""
    bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_text()
    first = bundle[bundle.index("-----BEGIN CERTIFICATE-----"):bundle.index("-----END CERTIFICATE-----") + 25]
    answer = json.dumps({"cluster": {"name": EKS_CLUSTER, "endpoint": endpoint, "status": "ACTIVE",
                                     "certificateAuthority": {"data": base64.b64encode(first.encode()).decode()}}})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            found = self.path == f"/clusters/{EKS_CLUSTER}"
            body = answer.encode() if found else b'{"message": "No cluster found"}'
            self.send_response(200 if found else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def get_json(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urlopen(req, timeout=10) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


class Stack:
    """The stand-ins and the settings every function gets."""

    def __init__(self, run_dir: Path, latency_ms: int | None = None, users: int = 0):
        self.identity, ready = start("identity-service", env={"IDENTITY_STAND_IN_USERS": str(users)})
        self.token_url = ready["token_url"]
        self.identity_base = ready["token_url"].rsplit("/", 1)[0]
        kubeconfig = run_dir / f"kubeconfig-{uuid.uuid4()}"
        latency = {"KUBE_STAND_IN_LATENCY_MS": str(latency_ms)} if latency_ms else {}
        self.cluster, cluster = start("kube-stand-in", ["0", str(kubeconfig)],
                                      {**latency, **AWS, "KUBE_STAND_IN_EKS_CLUSTER": EKS_CLUSTER})
        self.cluster_url = cluster["url"]
        self.eks = describe_cluster_stub(self.cluster_url)
        self.tokens = {user: get_json(ready["token_url"], "POST", {"user": user})["token"] for user in ("alice", "bob")}
        self.env = {
            "AUTH_API_URL": ready["url"],
            "GROUP_NAMES": "/ndp_ep/ep-dev",
            "ADMIN_GROUP_NAMES": "/ndp_ep/admins",
            **AWS,
            "EKS_CLUSTER_NAME": EKS_CLUSTER,
            "AWS_ENDPOINT_URL_EKS": f"http://127.0.0.1:{self.eks.server_address[1]}",
            "REXEC_SERVER_SOURCE_SHA256": "0" * 64,
            "REXEC_SERVER_IMAGE_DIGESTS": ",".join(f"3.1{n}=sha256:{'0' * 64}" for n in range(4)),
            "REXEC_DEPLOYMENT_API_URL": "http://127.0.0.1:9/rexec",
            # One caller spawns hundreds of times a minute here: what is measured is a spawn, not
            # the limit's 429.
            "REXEC_SPAWNS_PER_MINUTE": "1000000",
            "RUST_LOG": "info",
        }

    def identity_calls(self) -> int:
        return get_json(f"{self.identity_base}/stand-in/calls")["calls"]

    def close(self):
        stop(self.identity)
        stop(self.cluster)
        self.eks.shutdown()


def event(name, token, **changes) -> bytes:
    text = (ROOT / "events" / f"{name}.json").read_text()
    if token:
        text = text.replace("REPLACE_WITH_TOKEN", token)
    data = json.loads(text)
    data.update(changes)
    return json.dumps(data).encode()


class Function:
    """One process of a function's release binary under its own Runtime API stub."""

    def __init__(self, name, env):
        self.runtime = RuntimeApi()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(RELEASE / name)],
            env={
                "PATH": os.environ.get("PATH", ""),
                "AWS_LAMBDA_RUNTIME_API": self.runtime.address,
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
                "AWS_REGION": "us-east-1",
                **env,
            },
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )

    def invoke(self, payload: bytes):
        self.runtime.events.put(payload)
        return self.runtime.answer()

    def answer_to(self, payload: bytes) -> tuple[int, str]:
        """(status, body) of the API Gateway answer to `payload`; 502 when the function failed,
        as API Gateway answers then."""
        self.runtime.events.put(payload)
        kind, _, _, body = self.runtime.answers.get(timeout=ANSWER_WITHIN)
        if kind != "response":
            return 502, body.decode(errors="replace")
        return gateway_answer(body)

    def peak_rss_mib(self) -> float:
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self):
        stop(self.proc)
        self.runtime.close()


def cold_start(name, env, payload):
    """(init ms, first invocation ms, total ms) of one fresh process."""
    function = Function(name, env)
    try:
        function.runtime.events.put(payload)
        took, received, _ = function.runtime.answer()
        init = function.runtime.first_poll - function.started
        return init * 1000, took * 1000, (received - function.started) * 1000
    finally:
        function.close()


def warm(name, env, payload, count):
    """(median ms of an invocation, peak RSS MiB) over `count` invocations of one process."""
    function = Function(name, env)
    try:
        function.invoke(payload)
        times = [function.invoke(payload)[0] * 1000 for _ in range(count)]
        return statistics.median(times), function.peak_rss_mib()
    finally:
        function.close()


def spread(values):
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def round_trips(run_dir):
    """A spawn of a new, a reused and a replaced server, each in the same warm process."""
    stack = Stack(run_dir, latency_ms=40)
    env = dict(stack.env, REXEC_SPAWN_WAIT_SECONDS="0")
    function = Function("spawn-server", env)
    rows = []
    try:
        # bob's server builds the environment, so that alice's finds it built.
        function.invoke(event("spawn-server", stack.tokens["bob"]))
        for case, force in (("new", "False"), ("reused", "False"), ("replaced", "True")):
            get_json(f"{stack.cluster_url}/stand-in/round-trips", "DELETE")
            identity_before = stack.identity_calls()
            payload = event("spawn-server", stack.tokens["alice"],
                            body="requirments=python%3D%3D3.11&requirments=numpy%3E%3D1.26"
                            f"&force_reinstall={force}&token={stack.tokens['alice']}")
            _, _, status = function.invoke(payload)
            trips = get_json(f"{stack.cluster_url}/stand-in/round-trips")
            rows.append((case, status, trips["calls"], trips["in_sequence"], stack.identity_calls() - identity_before))
    finally:
        function.close()
        stack.close()
    return rows


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    warm_count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    print(f"building the release binaries ({os.uname().machine})...", file=sys.stderr, flush=True)
    packages = [arg for name, _, _ in FUNCTIONS for arg in ("-p", name)]
    subprocess.run(["cargo", "build", "--release", "--quiet", "--locked", "-p", "rexec-stand-ins", *packages],
                   cwd=ROOT, check=True)
    run_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"rexec-bench-{uuid.uuid4()}"
    run_dir.mkdir()
    stack = Stack(run_dir)
    table = []
    try:
        for name, event_name, user in FUNCTIONS:
            print(f"  {name}", file=sys.stderr, flush=True)
            payload = event(event_name, stack.tokens[user] if user else None)
            if name == "spawn-server":
                # alice's server, made and ready first: the measured spawns reuse it.
                function = Function(name, stack.env)
                function.invoke(payload)
                function.close()
            colds = [cold_start(name, stack.env, payload) for _ in range(runs)]
            warm_ms, rss = warm(name, stack.env, payload, warm_count)
            size = (RELEASE / name).stat().st_size / 2**20
            table.append((name, [c[0] for c in colds], [c[1] for c in colds], [c[2] for c in colds], warm_ms, rss, size))
    finally:
        stack.close()
    trips = round_trips(run_dir)
    for leftover in run_dir.iterdir():
        leftover.unlink()
    run_dir.rmdir()

    print(f"\ncold starts over {runs} processes (median (min-max) ms), warm over {warm_count} invocations;"
          f" {os.uname().machine}, {os.cpu_count()} cores\n")
    print("| function | cold start ms | init ms | first invocation ms | warm ms | peak RSS MiB | binary MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, init, first, total, warm_ms, rss, size in table:
        print(f"| {name} | {spread(total)} | {spread(init)} | {spread(first)} | {warm_ms:.2f} | {rss:.1f} | {size:.1f} |")
    print("\n| spawn | status | Kubernetes requests | in sequence | identity calls |")
    print("|---|---|---|---|---|")
    for case, status, calls, in_sequence, identity in trips:
        print(f"| {case} | {status} | {calls} | {in_sequence} | {identity} |")


if __name__ == "__main__":
    main()
