"""The admission policies of deploy/k8s/admission-policy.yaml, evaluated with a CEL
implementation nobody here wrote (cel-python) as the API server evaluates them: against the
objects the functions really write (a spawn through the local stack, read back from the real
control plane, whose own admission chain admitted them first) they admit, against hostile variants they deny, and requests from other
groups are not theirs to judge."""

import copy
from pathlib import Path

import celpy
import pytest
import requests
import yaml

from conftest import rendered

ROOT = Path(__file__).resolve().parents[2]
POLICIES = {
    doc["metadata"]["name"]: doc["spec"]
    for doc in yaml.safe_load_all((ROOT / "deploy/k8s/admission-policy.yaml").read_text())
    if doc["kind"] == "ValidatingAdmissionPolicy"
}
OURS = {"username": "arn:aws:sts::1:assumed-role/spawn", "groups": ["rexec-lambda-spawn", "system:authenticated"]}
SOMEONE_ELSE = {"username": "admin", "groups": ["system:masters"]}

env = celpy.Environment()


def evaluate(expression: str, activation: dict):
    return env.program(env.compile(expression)).evaluate(activation)


def admitted(policy: str, operation: str, obj=None, old=None, namespace=None, user=OURS) -> bool:
    """Whether the policy admits the request, as the API server decides: a matchCondition that is
    false skips the policy; a validation that is false or fails to evaluate denies."""
    spec = POLICIES[policy]
    rules = spec["matchConstraints"]["resourceRules"]
    assert any(operation in r["operations"] for r in rules), f"{policy} does not see {operation}"
    activation = {
        "request": celpy.json_to_cel({"operation": operation, "userInfo": user}),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
        "namespaceObject": celpy.json_to_cel(namespace),
    }
    for condition in spec.get("matchConditions", []):
        if not evaluate(condition["expression"], activation):
            return True
    # Each variable sees those before it, as `variables.<name>`.
    variables = celpy.celtypes.MapType()
    activation["variables"] = variables
    for variable in spec.get("variables", []):
        variables[celpy.celtypes.StringType(variable["name"])] = evaluate(variable["expression"], activation)
    for validation in spec["validations"]:
        try:
            if not evaluate(validation["expression"], activation):
                return False
        except celpy.CELEvalError:
            return False
    return True


@pytest.fixture(scope="module")
def written(api, identity, control_plane):
    """The namespace, pod and guard rails the functions wrote for a spawn of bob's."""
    token = identity.token("bob")
    resp = requests.post(
        f"{api.rexec}/spawn",
        data={"requirments": ["python==3.11", "six"], "token": token},
        timeout=60,
    )
    assert resp.status_code in (200, 201), resp.text
    ns = resp.json()["server"]["namespace"]
    pod = resp.json()["server"]["name"]
    get = control_plane.get
    objects = {
        "namespace": get(f"/api/v1/namespaces/{ns}"),
        "pod": get(f"/api/v1/namespaces/{ns}/pods/{pod}"),
        "configmap": get(f"/api/v1/namespaces/{ns}/configmaps/rexec-server"),
        "networkpolicy": get(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/rexec-egress"),
        "claim": get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/rexec-environments"),
        "environments": get("/api/v1/namespaces/rexec-environments"),
    }
    # What the spawn wrote, as admission saw it: the scheduler binds the pod afterwards.
    del objects["pod"]["spec"]["nodeName"]
    build = objects["pod"]["metadata"]["labels"]
    objects["job"] = get(
        f"/apis/batch/v1/namespaces/rexec-environments/jobs/env-{build['rexec.ndp.io/environment']}-{build['rexec.ndp.io/build']}"
    )
    yield objects
    requests.delete(f"{api.rexec}/terminate", data={"token": token}, timeout=60)


def test_what_the_functions_write_is_admitted(written):
    ns, pod = written["namespace"], written["pod"]
    assert admitted("rexec-lambda-namespaces", "CREATE", obj=ns)
    assert admitted("rexec-lambda-namespaces", "UPDATE", obj=ns, old=ns)
    assert admitted("rexec-lambda-namespaces", "DELETE", old=ns)
    assert admitted("rexec-lambda-pods", "CREATE", obj=pod)
    assert admitted("rexec-lambda-claims", "CREATE", obj=written["claim"])
    assert admitted("rexec-lambda-builds", "CREATE", obj=written["job"])
    assert admitted("rexec-lambda-namespaced-writes", "CREATE", obj=written["job"], namespace=written["environments"])
    for kind in ("pod", "configmap", "networkpolicy", "claim"):
        assert admitted("rexec-lambda-namespaced-writes", "CREATE", obj=written[kind], namespace=ns), kind
    assert admitted("rexec-lambda-namespaced-writes", "DELETE", old=pod, namespace=ns)


def test_namespaces_not_ours_are_never_touched(written):
    ns = written["namespace"]
    foreign = {"metadata": {"name": "team-a", "labels": {"team": "a"}}}
    unlabelled = copy.deepcopy(ns)
    del unlabelled["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    no_owner = copy.deepcopy(ns)
    del no_owner["metadata"]["annotations"]
    new_owner = copy.deepcopy(ns)
    new_owner["metadata"]["annotations"]["rexec.ndp.io/sub"] = "mallory"
    assert not admitted("rexec-lambda-namespaces", "CREATE", obj=unlabelled)
    assert not admitted("rexec-lambda-namespaces", "CREATE", obj=no_owner)
    assert not admitted("rexec-lambda-namespaces", "DELETE", old=foreign)
    # The environments' namespace is ours but no caller's: the reaper never deletes it.
    environments = {"metadata": {"name": "rexec-environments", "labels": {"app.kubernetes.io/managed-by": "rexec-lambda"}}}
    assert not admitted("rexec-lambda-namespaces", "DELETE", old=environments)
    hijacked = copy.deepcopy(foreign)
    hijacked["metadata"]["labels"] = ns["metadata"]["labels"]
    hijacked["metadata"]["annotations"] = ns["metadata"]["annotations"]
    assert not admitted("rexec-lambda-namespaces", "UPDATE", obj=hijacked, old=foreign), "no labelling a foreign one"
    assert not admitted("rexec-lambda-namespaces", "UPDATE", obj=unlabelled, old=ns), "the label cannot be removed"
    assert not admitted("rexec-lambda-namespaces", "UPDATE", obj=new_owner, old=ns), "the owner cannot change"
    for kind in ("pod", "configmap", "networkpolicy"):
        assert not admitted("rexec-lambda-namespaced-writes", "CREATE", obj=written[kind], namespace=foreign), kind
    assert not admitted("rexec-lambda-namespaced-writes", "DELETE", old=written["pod"], namespace=foreign)
    assert admitted("rexec-lambda-namespaces", "DELETE", old=foreign, user=SOMEONE_ELSE), "other users are not judged"


def hostile(pod: dict, change) -> dict:
    pod = copy.deepcopy(pod)
    change(pod["spec"])
    return pod


HOSTILE_PODS = {
    "host network": lambda s: s.update(hostNetwork=True),
    "host PID": lambda s: s.update(hostPID=True),
    "host IPC": lambda s: s.update(hostIPC=True),
    "host path": lambda s: s["volumes"].append({"name": "root", "hostPath": {"path": "/"}}),
    "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
    "privilege escalation": lambda s: s["initContainers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
    "capabilities kept": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(drop=[]),
    "capability added": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
    "no security context": lambda s: s["containers"][0].pop("securityContext"),
    "service-account token": lambda s: s.update(automountServiceAccountToken=True),
    "token by default": lambda s: s.pop("automountServiceAccountToken"),
    "ephemeral container": lambda s: s.update(ephemeralContainers=[{"name": "debug", "image": "python:3.11-slim"}]),
    "host port": lambda s: s["containers"][0].update(ports=[{"containerPort": 22, "hostPort": 22}]),
    "image outside the allow-list": lambda s: s["containers"][0].update(image="evil.example/miner:latest"),
    "image by its tag alone": lambda s: s["containers"][0].update(image=s["containers"][0]["image"].split("@")[0]),
    "init image outside the allow-list": lambda s: s["initContainers"][0].update(image="ghcr.io/x/python:3.11"),
    "a renamed claim mounted whole and writable": lambda s: (
        s["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "rexec-environments"}}),
        s["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/opt/data"})),
    "another claim": lambda s: s["volumes"][0]["persistentVolumeClaim"].update(claimName="data"),
    "a node named": lambda s: s.update(nodeName="node-1"),
    "a priority class": lambda s: s.update(priorityClassName="system-node-critical"),
    "a toleration": lambda s: s.update(tolerations=[{"operator": "Exists"}]),
    "another environment's build": lambda s: s["containers"][0]["volumeMounts"][0].update(subPath="b" * 64 + "/1"),
    "the whole volume": lambda s: s["initContainers"][0]["volumeMounts"][0].pop("subPath"),
    "a mount writable": lambda s: s["containers"][0]["volumeMounts"][0].update(readOnly=False),
}

HOSTILE_BUILDS = {
    "retries": lambda j: j["spec"].update(backoffLimit=3),
    "a second container": lambda j: j["spec"]["template"]["spec"]["containers"].append(
        copy.deepcopy(j["spec"]["template"]["spec"]["containers"][0]) | {"name": "second"}),
    "another environment's directory": lambda j: j["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0].update(
        subPath="b" * 64 + "/1"),
    "the environment's every build": lambda j: j["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0].update(
        subPath="."),
    "a node named": lambda j: j["spec"]["template"]["spec"].update(nodeName="node-1"),
    "no deadline": lambda j: j["spec"].pop("activeDeadlineSeconds"),
    "a deadline of a week": lambda j: j["spec"].update(activeDeadlineSeconds=7 * 86400),
    "kept for ever": lambda j: j["spec"].pop("ttlSecondsAfterFinished"),
    "a renamed claim mounted whole": lambda j: (
        j["spec"]["template"]["spec"]["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "rexec-environments"}}),
        j["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/opt/data"})),
    "the whole volume writable": lambda j: j["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0].pop("subPath"),
    "service-account token": lambda j: j["spec"]["template"]["spec"].update(automountServiceAccountToken=True),
    "privileged": lambda j: j["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(privileged=True),
    "image outside the allow-list": lambda j: j["spec"]["template"]["spec"]["containers"][0].update(image="evil.example/x"),
    "image by its tag alone": lambda j: j["spec"]["template"]["spec"]["containers"][0].update(
        image=j["spec"]["template"]["spec"]["containers"][0]["image"].split("@")[0]),
    "host path": lambda j: j["spec"]["template"]["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    **{f"the build script {how}": (lambda change: lambda j: change(j["spec"]["template"]["spec"]["containers"][0]))(change)
       for how, change in {
           "replaced by a shell": lambda c: c.update(command=["sh", "-c", "pip install evil"]),
           "with a line added": lambda c: c["command"].__setitem__(2, c["command"][2] + "import evil\n"),
           "given arguments": lambda c: c.update(args=["--evil"]),
           "run from the requirements' folder": lambda c: c.update(workingDir="/opt/rexec/requirements"),
           "with PYTHONPATH set": lambda c: c["env"].append({"name": "PYTHONPATH", "value": "/opt/rexec/requirements"}),
           "with variables from a ConfigMap": lambda c: c.update(envFrom=[{"configMapRef": {"name": "evil"}}]),
           "with the requirements mounted as sitecustomize": lambda c: c["volumeMounts"][1].update(
               mountPath="/usr/local/lib/python3.11/site-packages/sitecustomize.py", subPath="requirements.txt"),
       }.items()},
}


KEY = "a" * 64


def cleanup():
    return rendered("cleanup", "aaaa", KEY, "2", "python:3.11-slim@sha256:" + "0" * 64)


def cleaner(job):
    return job["spec"]["template"]["spec"]["containers"][0]


HOSTILE_CLEANUPS = {
    "another command": lambda j: cleaner(j).update(command=["sh", "-c", "rm -rf /opt/rexec/environment"]),
    "an image by its tag alone": lambda j: cleaner(j).update(image="python:3.11-slim"),
    "its whole environment": lambda j: cleaner(j).update(args=["/opt/rexec/environment"]),
    "a path out of it": lambda j: cleaner(j)["args"].append("/opt/rexec/environment/../" + "b" * 64),
    "another environment": lambda j: cleaner(j)["volumeMounts"][0].update(subPath="b" * 64),
    "the whole volume": lambda j: cleaner(j)["volumeMounts"][0].pop("subPath"),
    "a path inside the key": lambda j: cleaner(j)["volumeMounts"][0].update(subPath=KEY + "/1"),
    "another mount point": lambda j: cleaner(j)["volumeMounts"][0].update(mountPath="/opt/rexec/env"),
    "no environment named": lambda j: j["metadata"].pop("annotations"),
    "a second container": lambda j: j["spec"]["template"]["spec"]["containers"].append(copy.deepcopy(cleaner(j))),
    "no deadline": lambda j: j["spec"].pop("activeDeadlineSeconds"),
}


def test_a_cleanup_is_admitted_in_its_one_shape():
    assert admitted("rexec-lambda-builds", "CREATE", obj=cleanup())


@pytest.mark.parametrize("case", sorted(HOSTILE_CLEANUPS))
def test_cleanups_not_of_that_shape_are_denied(case):
    job = cleanup()
    HOSTILE_CLEANUPS[case](job)
    assert not admitted("rexec-lambda-builds", "CREATE", obj=job)


@pytest.mark.parametrize("case", sorted(HOSTILE_BUILDS))
def test_builds_not_of_our_shape_are_denied(written, case):
    job = copy.deepcopy(written["job"])
    HOSTILE_BUILDS[case](job)
    assert not admitted("rexec-lambda-builds", "CREATE", obj=job)


def test_only_the_read_only_environments_claim_is_admitted(written):
    claim = written["claim"]
    for change in ({"accessModes": ["ReadWriteMany"]}, {"storageClassName": "gp3"}):
        hostile_claim = copy.deepcopy(claim)
        hostile_claim["spec"].update(change)
        assert not admitted("rexec-lambda-claims", "CREATE", obj=hostile_claim), change


@pytest.mark.parametrize("case", sorted(HOSTILE_PODS))
def test_pods_not_of_our_shape_are_denied(written, case):
    assert not admitted("rexec-lambda-pods", "CREATE", obj=hostile(written["pod"], HOSTILE_PODS[case]))
