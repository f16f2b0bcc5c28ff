"""The README's run command, scripted: it comes up, serves a spawn and a terminate, uses the
identity service and cluster named by the environment when given, and stops with nothing left
behind, even when it is killed without a chance to clean up."""

import json
import os
import signal
import subprocess

import requests

from conftest import ROOT, answers, processes_with, running_stack


def spawn(base: str, token: str):
    return requests.post(
        f"{base}/rexec/spawn",
        data={"requirments": ["python==3.11", "numpy"], "force_reinstall": "False", "token": token},
        timeout=120,
    )


def test_make_dev_serves_and_stops_cleanly(tmp_path):
    """On the real control plane by default: what a spawn made is what kubectl shows, as an
    operator would look at it."""
    with running_stack(["make", "--no-print-directory", "dev"], {}, tmp_path / "make-dev.log") as stack:
        assert stack.ready["identity"] and stack.ready["cluster"] and stack.ready["kubectl"], stack.ready
        token = subprocess.run(
            ["make", "--no-print-directory", "token", "USER=alice"],
            cwd=ROOT, env=stack.env, capture_output=True, text=True, check=True,
        ).stdout.strip()
        spawned = spawn(stack.base, token)
        assert spawned.status_code == 201, spawned.text
        assert spawned.json()["Username"] == "alice"
        server = spawned.json()["server"]
        kubectl = Kubectl(stack.ready)
        pods = json.loads(kubectl("get", "pods", "-A", "-o", "json"))["items"]
        pod = next(p for p in pods if p["metadata"]["name"] == server["name"])
        assert pod["status"]["phase"] == "Running" and pod["spec"]["nodeName"].startswith("kwok-node-")
        events = kubectl("get", "events", "-n", server["namespace"])
        assert "Scheduled" in events and "Started" in events, events
        assert "Successfully assigned" in kubectl("describe", "pod", server["name"], "-n", server["namespace"])
        assert "kwok simulates this container" in kubectl("logs", server["name"], "-n", server["namespace"])
        assert "validatingadmissionpolicies" in kubectl("api-resources")
        assert kubectl("auth", "can-i", "create", "pods", "-n", server["namespace"],
                       "--as", "spawn-server", "--as-group", "rexec-lambda-spawn").strip() == "yes"
        kubectl("apply", "--server-side", "--dry-run=server", "-f", str(ROOT / "deploy" / "k8s"))
        version = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
        assert version == "v" + PINNED["KUBERNETES_VERSION"]
        terminated = requests.delete(f"{stack.base}/rexec/terminate", data={"token": token}, timeout=120)
        assert terminated.json()["deleted"] is True
        running = "\n".join(processes_with(stack.marker))
        for name in ("identity-service", "kube-apiserver", "etcd", "kwok", "cargo-lambda", "spawn-server"):
            assert name in running, f"{name} is not among the stack's processes:\n{running}"
        assert "kube-stand-in" not in running


class Kubectl:
    """The control plane's kubectl as its administrator, from a stack's ready line."""

    def __init__(self, ready: dict):
        self.command = [ready["kubectl"], "--kubeconfig", ready["kubeconfig"]]

    def __call__(self, *args: str) -> str:
        done = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout


PINNED = dict(line.split("=", 1) for line in (ROOT / "controlplane" / "versions.env").read_text().splitlines()
              if "=" in line and not line.startswith("#"))


def test_the_stand_in_is_one_switch_away(tmp_path):
    command = [str(ROOT / "scripts" / "dev"), "--ignore-changes", "--stand-in"]
    with running_stack(command, {}, tmp_path / "dev.log") as stack:
        assert stack.ready["kubectl"] is None
        running = "\n".join(processes_with(stack.marker))
        assert "kube-stand-in" in running and "kube-apiserver" not in running, running
        token = requests.post(stack.ready["token_url"], json={"user": "alice"}, timeout=5).json()["token"]
        assert spawn(stack.base, token).status_code == 201


def test_a_killed_stack_leaves_nothing_behind(tmp_path):
    """SIGKILL to scripts/dev alone: its watchdog ends the helpers and the functions."""
    command = [str(ROOT / "scripts" / "dev"), "--ignore-changes"]
    with running_stack(command, {}, tmp_path / "dev.log", stop=signal.SIGKILL) as stack:
        token = requests.post(stack.ready["token_url"], json={"user": "alice"}, timeout=5).json()["token"]
        assert spawn(stack.base, token).status_code == 201


def test_make_dev_uses_the_identity_service_and_cluster_of_the_environment(tmp_path, identity, control_plane):
    external = {
        "AUTH_API_URL": identity.url, "AUTH_API_METHOD": "POST", "KUBECONFIG": control_plane.functions_kubeconfig,
        "ENABLE_GROUP_BASED_ACCESS": "false",
    }
    # A cluster of the environment runs pods: the server's source and images must be pinned by
    # their digests.
    for variable, value in (("REXEC_SERVER_SOURCE_SHA256", "ab" * 32),
                            ("REXEC_SERVER_IMAGE_DIGESTS", ",".join(f"3.1{n}=sha256:{'cd' * 32}" for n in range(4)))):
        unpinned = subprocess.run(
            [str(ROOT / "scripts" / "dev"), "--ignore-changes"], env={**os.environ, **external, "PORT": "0"},
            capture_output=True, text=True, timeout=60,
        )
        assert unpinned.returncode == 2 and f"set {variable}" in unpinned.stderr, unpinned.stderr
        external[variable] = value
    with running_stack(["make", "--no-print-directory", "dev"], external, tmp_path / "make-dev.log") as stack:
        assert stack.ready["identity"] is None and stack.ready["cluster"] is None, stack.ready
        assert not answers(stack.port + 1) and not answers(stack.port + 2), "no helpers of its own"
        running = "\n".join(processes_with(stack.marker))
        for helper in ("identity-service", "kube-stand-in", "kube-apiserver"):
            assert helper not in running, running
        # eve: this stack admits every user (ENABLE_GROUP_BASED_ACCESS=false), and no other test
        # gives eve a server.
        token = identity.token("eve")
        spawned = spawn(stack.base, token)
        assert spawned.status_code == 201, spawned.text
        namespace = spawned.json()["server"]["namespace"]
        assert control_plane.get(f"/api/v1/namespaces/{namespace}")["metadata"]["name"] == namespace
        terminated = requests.delete(f"{stack.base}/rexec/terminate", data={"token": token}, timeout=120)
        assert terminated.json()["deleted"] is True
