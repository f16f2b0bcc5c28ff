"""`make dev` against a cluster of one's own, as docs/real-cluster.md shows it, tried on the
session's real control plane: its administrator's kubeconfig rewritten as a developer's (YAML,
client certificates inlined, as `kubectl config view --raw --flatten` writes it), and once through
an `exec` credential plugin. Each function acts as its own group of deploy/k8s/rbac.yaml by
impersonation, so the cluster refuses it what it refuses the function on EKS. Also the manifests
of deploy/k8s/dev/ against the real API server."""

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import requests
import yaml

from conftest import ROOT, running_stack

PINS = {
    "REXEC_SERVER_SOURCE_SHA256": "0" * 64,
    "REXEC_SERVER_IMAGE_DIGESTS": ",".join(f"3.1{n}=sha256:{'0' * 64}" for n in range(4)),
    "REXEC_SPAWNS_PER_MINUTE": "120",
    # Callers of these stacks' own identity services that no other test uses.
    "IDENTITY_STAND_IN_USERS": "6",
}
DEV = ROOT / "deploy" / "k8s" / "dev"


def flattened(control_plane, path: Path) -> dict:
    """The administrator's kubeconfig as a developer has it: YAML, certificates inlined."""
    view = control_plane.kubectl("config", "view", "--raw", "--flatten", "-o", "yaml")
    assert view.returncode == 0, view.stderr
    path.write_text(view.stdout)
    config = yaml.safe_load(view.stdout)
    assert config["users"][0]["user"]["client-certificate-data"], "a client certificate, not a token"
    return config


def token(stack, user: str) -> str:
    return requests.post(stack.ready["token_url"], json={"user": user}, timeout=5).json()["token"]


def spawn(stack, user: str):
    return requests.post(f"{stack.base}/rexec/spawn",
                         data={"requirments": ["python==3.11"], "token": token(stack, user)}, timeout=120)


def terminate(stack, user: str):
    gone = requests.delete(f"{stack.base}/rexec/terminate", data={"token": token(stack, user)}, timeout=120)
    assert gone.json()["deleted"] is True, gone.text


def test_a_yaml_kubeconfig_with_client_certificates_serves_as_each_function(tmp_path, control_plane):
    kubeconfig = tmp_path / "kubeconfig.yaml"
    flattened(control_plane, kubeconfig)
    env = {**PINS, "KUBECONFIG": str(kubeconfig)}
    with running_stack(["make", "--no-print-directory", "dev"], env, tmp_path / "make-dev.log") as stack:
        log = stack.log.read_text()
        assert "answers spawn-server as rexec-lambda:spawn-server (rexec-lambda-spawn" in log, log
        assert "the admission policies are installed" in log, log
        assert stack.ready["kubeconfig"] == str(kubeconfig) and stack.ready["cluster"] is None, stack.ready

        served = spawn(stack, "user-004")
        assert served.status_code == 201, served.text
        namespace = served.json()["server"]["namespace"]
        assert control_plane.get(f"/api/v1/namespaces/{namespace}")["metadata"]["name"] == namespace
        terminate(stack, "user-004")

        # Without its group's binding, the spawn function may not write: the administrator whose
        # certificate this is still may, so the refusal shows whom the function acts as.
        unbound = control_plane.kubectl("delete", "clusterrolebinding", "rexec-lambda-spawn")
        assert unbound.returncode == 0, unbound.stderr
        try:
            refused = spawn(stack, "user-005")
            assert refused.status_code == 500, refused.text
            assert 'User \\"rexec-lambda:spawn-server\\" cannot' in stack.log.read_text()
        finally:
            restored = control_plane.kubectl("apply", "--server-side", "-f", str(ROOT / "deploy" / "k8s" / "rbac.yaml"))
            assert restored.returncode == 0, restored.stderr
        served = spawn(stack, "user-005")
        assert served.status_code == 201, served.text
        terminate(stack, "user-005")


def test_an_exec_plugin_gives_the_credentials_and_is_called(tmp_path, control_plane):
    config = flattened(control_plane, tmp_path / "admin.yaml")
    user = config["users"][0]["user"]
    calls = tmp_path / "plugin-calls"
    plugin = tmp_path / "exec-plugin.py"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {
        "clientCertificateData": base64.b64decode(user["client-certificate-data"]).decode(),
        "clientKeyData": base64.b64decode(user["client-key-data"]).decode()}}
    plugin.write_text(f"import sys\nopen({str(calls)!r}, 'a').write('called\\n')\n"
                      f"print({json.dumps(json.dumps(credential))})\n")
    config["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                                           "args": [str(plugin)], "interactiveMode": "Never"}}
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(yaml.safe_dump(config))
    env = {**PINS, "KUBECONFIG": str(kubeconfig)}
    with running_stack(["make", "--no-print-directory", "dev"], env, tmp_path / "make-dev.log") as stack:
        before = calls.read_text().count("called")
        assert before >= 1, "the check reached the cluster through the plugin"
        served = spawn(stack, "user-006")
        assert served.status_code == 201, served.text
        assert calls.read_text().count("called") > before, "the spawn function called the plugin"
        terminate(stack, "user-006")


def test_the_development_manifests_apply_to_a_real_api_server(control_plane):
    made = control_plane.kubectl("create", "namespace", "local-path-storage")
    assert made.returncode == 0 or "AlreadyExists" in made.stderr, made.stderr
    docs = [doc for path in sorted(DEV.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]
    for doc in docs:
        if doc["kind"] == "StorageClass":
            # The session's cluster has a class of that name already, and a class is immutable.
            doc["metadata"]["name"] += "-dry-run"
    applied = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-",
                                    input=yaml.safe_dump_all(docs))
    assert applied.returncode == 0, applied.stderr
    assert len(applied.stdout.splitlines()) == len(docs), applied.stdout


def test_a_developer_may_impersonate_the_functions_and_no_one_else(control_plane):
    applied = control_plane.kubectl("apply", "--server-side", "-f", str(DEV / "developer.yaml"))
    assert applied.returncode == 0, applied.stderr
    try:
        def can(what: str) -> bool:
            answer = control_plane.kubectl("auth", "can-i", "impersonate", what, "--as", "dana",
                                           "--as-group", "rexec-lambda-developers")
            return answer.stdout.strip() == "yes"

        assert can("users/rexec-lambda:spawn-server") and can("groups/rexec-lambda-spawn")
        assert can("groups/rexec-lambda-reap")
        for other in ("users/rexec-local-admin", "groups/system:masters", "serviceaccounts/default",
                      "groups/rexec-lambda-developers"):
            assert not can(other), other
    finally:
        control_plane.kubectl("delete", "-f", str(DEV / "developer.yaml"))


def test_the_broker_is_pinned_by_digest_and_its_control_port_closed():
    docs = list(yaml.safe_load_all((DEV / "broker.yaml").read_text()))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"[\w./-]+@sha256:[0-9a-f]{64}", container["image"]), container["image"]
    assert "--debug" not in container["command"]
    assert {p["containerPort"] for p in container["ports"]} == {5559, 5560}
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert {p["port"] for p in service["spec"]["ports"]} == {5559, 5560}
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == {5559, 5560}, "the control port (5561) is reachable from nowhere"
