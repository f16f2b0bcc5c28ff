"""A workshop opens: many users spawn their servers at once, then ask how they are doing.

The release builds of the functions, each instance handling one event at a time under a Lambda
Runtime API stub as on Lambda, up to INSTANCES instances of a function (started before the phase,
so each one's first event pays its first connections: `bench_functions.py` measures the rest of
a cold start); the identity service and the Kubernetes stand-in on 127.0.0.1, the settings
`scripts/dev` gives, and USERS users of the identity service in the allowed group:

1. SPAWNS concurrent spawns, a few per user: some users send the same requirements each time
   (the server is reused), some send another set (409, unless it is forced), some force a
   reinstall, and some share their requirements with other users;
2. STATUS concurrent `GET /rexec/server` calls, spread over the users.

It prints, for each phase, the answers by status and reason, the latency distribution (p50,
p95, p99, max: from the release of all the requests to each answer, waiting for a free instance
included) and the Kubernetes requests the functions made, counted by the stand-in; and it
checks that every user has exactly one server, that no answer is a 5xx or one the OpenAPI
document does not list, and that none took longer than API Gateway's 29 s. It exits 1 if a
check fails.

    python3 scripts/load.py [USERS] [SPAWNS] [STATUS] [INSTANCES]     (defaults: 50, 200, 500, 200)
"""

import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from bench_functions import ROOT, Function, Stack, event, get_json

GATEWAY_LIMIT = 29.0  # seconds
# One requirement set many users share; the others are each user's own.
SHARED = ["python==3.11", "numpy>=1.26", "dill"]


def own(user: str, variant: int) -> list[str]:
    return ["python==3.11", f"pandas>=2.{variant}", f"{user}-tools==1.0"]


def plan(users: list[str], spawns: int, rng: random.Random) -> list[tuple[str, list[str], bool]]:
    """(user, requirements, force) for each spawn, in a random order: users take turns, and
    what a user sends follows its index."""
    calls = []
    for i in range(spawns):
        user = users[i % len(users)]
        turn = i // len(users)
        kind = users.index(user) % 4
        if kind == 0:  # the shared set every time: created once, then reused
            calls.append((user, SHARED, False))
        elif kind == 1:  # its own set every time
            calls.append((user, own(user, 0), False))
        elif kind == 2:  # changes its mind without force: one set wins, the other is a 409
            calls.append((user, own(user, turn % 2), False))
        else:  # forces a reinstall now and then
            calls.append((user, own(user, 0), turn % 2 == 1))
    rng.shuffle(calls)
    return calls


class Instances:
    """Instances of one function, each handling one event at a time."""

    def __init__(self, name: str, env: dict, count: int):
        self.all = [Function(name, env) for _ in range(count)]
        self.idle: queue.Queue = queue.Queue()
        for instance in self.all:
            self.idle.put(instance)

    def answer_to(self, payload: bytes) -> tuple[int, str]:
        instance = self.idle.get()
        try:
            return instance.answer_to(payload)
        finally:
            self.idle.put(instance)

    def close(self):
        for instance in self.all:
            instance.close()


def fire(calls, send):
    """Releases every call at once (a thread each) and returns [(call, status, seconds, body)]."""
    gate = threading.Barrier(len(calls))

    def one(call):
        gate.wait()
        started = time.perf_counter()
        try:
            status, body = send(call)
        except queue.Empty:
            status, body = 0, "no answer"
        return call, status, time.perf_counter() - started, body

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))]


def why_so(result) -> str:
    """The status with the error's code, or the stage of the server."""
    _, status, _, body = result
    try:
        answer = json.loads(body)
    except ValueError:
        return str(status)
    if "error" in answer:
        return f"{status} {answer['error']}"
    server = answer.get("server", answer)
    return f"{status} {server.get('stage', '')}".strip()


def report(title, results, allowed, kube_calls, identity_calls) -> list[str]:
    """Prints a phase's figures and returns what went wrong."""
    times = sorted(t for _, _, t, _ in results)
    print(f"\n{title}: {len(results)} concurrent requests")
    print("  answers:  " + ", ".join(f"{why} x{n}" for why, n in sorted(Counter(map(why_so, results)).items())))
    print(f"  latency:  p50 {statistics.median(times):.2f} s, p95 {percentile(times, 95):.2f} s,"
          f" p99 {percentile(times, 99):.2f} s, max {times[-1]:.2f} s")
    by_request = ", ".join(f"{k} {n}" for k, n in sorted(kube_calls["by_request"].items(), key=lambda kv: -kv[1]))
    print(f"  Kubernetes requests: {kube_calls['calls']} ({by_request})")
    print(f"  identity calls: {identity_calls}")
    problems = []
    for call, status, took, body in results:
        if status >= 500 or status not in allowed:
            problems.append(f"{title}: {status or 'no answer'} is not a documented answer ({call}): {body[:200]}")
        if took > GATEWAY_LIMIT:
            problems.append(f"{title}: {took:.1f} s for {call}, beyond API Gateway's {GATEWAY_LIMIT:.0f} s")
        try:
            json.loads(body)
        except ValueError:
            problems.append(f"{title}: {status} without a JSON body ({call})")
    return problems


def cpu_seconds(pid: int) -> float:
    """The CPU time all the threads of a process have used, in seconds."""
    return sum(int((task / "schedstat").read_text().split()[0])
               for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9


def live_servers(cluster: str) -> Counter:
    """Pods not being deleted, by namespace, as the stand-in holds them."""
    req = Request(f"{cluster}/api/v1/pods", headers={"Authorization": "Bearer local"})
    with urlopen(req, timeout=10) as resp:
        pods = json.load(resp)
    return Counter(p["metadata"]["namespace"] for p in pods["items"] if "deletionTimestamp" not in p["metadata"])


def main():
    users_count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    spawns = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    status_calls = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    instances = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    print(f"building the release binaries ({os.uname().machine})...", file=sys.stderr, flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--locked", "-p", "rexec-stand-ins",
                    "-p", "spawn-server", "-p", "get-server", "-p", "serve-rexec-docs"], cwd=ROOT, check=True)
    rng = random.Random(11)
    problems = []
    run_dir = Path(tempfile.mkdtemp())
    stack = Stack(run_dir, users=users_count)
    try:
        users = [f"user-{i:03}" for i in range(1, users_count + 1)]
        tokens = {u: get_json(stack.token_url, "POST", {"user": u})["token"] for u in users}
        docs = Function("serve-rexec-docs", stack.env)
        try:
            openapi = json.loads(docs.answer_to(event("serve-rexec-docs", None))[1])
        finally:
            docs.close()

        def phase(title, name, calls, payload, allowed):
            pool = Instances(name, stack.env, min(instances, len(calls)))
            processes = {"functions": [f.proc.pid for f in pool.all], "Kubernetes stand-in": [stack.cluster.pid],
                         "identity service": [stack.identity.pid], "this script": [os.getpid()]}
            try:
                get_json(f"{stack.cluster_url}/stand-in/round-trips", "DELETE")
                identity_before = stack.identity_calls()
                cpu_before = {k: sum(map(cpu_seconds, pids)) for k, pids in processes.items()}
                results = fire(calls, lambda call: pool.answer_to(payload(call)))
                cpu = {k: sum(map(cpu_seconds, pids)) - cpu_before[k] for k, pids in processes.items()}
                kube_calls = get_json(f"{stack.cluster_url}/stand-in/round-trips")
                identity_calls = stack.identity_calls() - identity_before
            finally:
                pool.close()
            allowed = {int(code) for code in openapi["paths"][allowed[0]][allowed[1]]["responses"]}
            problems.extend(report(title, results, allowed, kube_calls, identity_calls))
            print("  CPU:      " + ", ".join(f"{k} {v:.1f} s" for k, v in cpu.items()))
            return results

        def spawn(call):
            user, reqs, force = call
            form = urlencode([("requirments", r) for r in reqs] + [("force_reinstall", str(force)),
                                                                    ("token", tokens[user])])
            return event("spawn-server", tokens[user], body=form)

        print(f"{users_count} users, {spawns} spawns, {status_calls} status calls, up to {instances} instances"
              f" of a function; {os.uname().machine}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
        phase("POST /rexec/spawn", "spawn-server", plan(users, spawns, rng), spawn, ("/spawn", "post"))
        statuses = [users[i % users_count] for i in range(status_calls)]
        rng.shuffle(statuses)
        answers = phase("GET /rexec/server", "get-server", statuses,
                        lambda user: event("get-server", tokens[user]), ("/server", "get"))

        # Exactly one server per user: each user's GET /server answered with one namespace, the
        # cluster holds one live pod in each, and none elsewhere.
        namespaces: dict[str, set] = {}
        for user, status, _, body in answers:
            if status == 200:
                namespaces.setdefault(user, set()).add(json.loads(body)["namespace"])
        live = live_servers(stack.cluster_url)
        for user in users:
            seen = namespaces.get(user, set())
            if len(seen) != 1 or live[next(iter(seen))] != 1:
                problems.append(f"{user}: namespaces {sorted(seen)}, live pods {[live[n] for n in seen]}")
        strays = set(live) - {n for seen in namespaces.values() for n in seen}
        if strays:
            problems.append(f"pods outside the users' namespaces: {sorted(strays)}")
        print(f"\nservers: {sum(live.values())} live pods in {len(live)} namespaces for {len(namespaces)} users")
    finally:
        stack.close()
        for leftover in run_dir.iterdir():
            leftover.unlink()
        run_dir.rmdir()

    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        sys.exit(1)
    print("every check held")


if __name__ == "__main__":
    main()
