"""The real control plane (scripts/cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) judges what the stand-in and the CEL library judged before: the project's
manifests applied as an operator applies them, what each function's identity may do as the API
server's RBAC decides it, what the admission chain (the policies, Pod Security) admits and which
policy refuses each hostile variant, and a pod scheduled on a kwok node."""

import json
import subprocess

import pytest

from conftest import ROOT, rendered

VERSIONS = dict(
    line.split("=", 1)
    for line in (ROOT / "controlplane" / "versions.env").read_text().splitlines()
    if line and not line.startswith("#")
)
NS = "rexec-cp-1"


def test_kubectl_and_the_api_server_are_the_pinned_release(control_plane):
    shown = control_plane.kubectl("version", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    versions = json.loads(shown.stdout)
    pinned = "v" + VERSIONS["KUBERNETES_VERSION"]
    assert (versions["clientVersion"]["gitVersion"], versions["serverVersion"]["gitVersion"]) == (pinned, pinned)
    resources = control_plane.kubectl("api-resources")
    assert resources.returncode == 0 and "validatingadmissionpolicies" in resources.stdout


def test_the_manifests_apply_server_side_again_unchanged(control_plane):
    again = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "-f", str(ROOT / "deploy" / "k8s"))
    assert again.returncode == 0, again.stderr
    assert "rexec-lambda-spawn" in again.stdout and "rexec-lambda-builds" in again.stdout


# What each function's identity may do, as RBAC decides it: (verb, resource, namespace, allowed).
ANY = "rexec-u-1"
ENVIRONMENTS = "rexec-environments"
MAY = {
    "rexec-lambda-spawn": [
        ("get", "namespaces", "", True), ("create", "namespaces", "", True), ("patch", "namespaces", "", True),
        ("delete", "namespaces", "", False),
        ("create", "pods", ANY, True), ("list", "pods", ANY, True), ("watch", "pods", ANY, True),
        ("delete", "pods", ANY, True), ("get", "pods", ANY, False),
        ("create", "configmaps", ANY, True), ("update", "configmaps", ANY, True), ("delete", "configmaps", ANY, False),
        ("patch", "resourcequotas", ANY, True), ("patch", "limitranges", ANY, True),
        ("create", "resourcequotas", ANY, True), ("create", "networkpolicies.networking.k8s.io", ANY, True),
        ("delete", "resourcequotas", ANY, False),
        ("patch", "networkpolicies.networking.k8s.io", ANY, True), ("patch", "persistentvolumeclaims", ANY, True),
        ("list", "jobs.batch", ENVIRONMENTS, True), ("create", "jobs.batch", ENVIRONMENTS, True),
        ("create", "jobs.batch", ANY, False), ("delete", "jobs.batch", ENVIRONMENTS, False),
    ],
    "rexec-lambda-delete": [
        ("get", "namespaces", "", True), ("delete", "namespaces", "", False),
        ("get", "configmaps", ANY, True), ("patch", "configmaps", ANY, True), ("delete", "pods", ANY, True),
        ("create", "pods", ANY, False), ("list", "pods", ANY, False),
    ],
    "rexec-lambda-read": [
        ("get", "namespaces", "", True), ("get", "configmaps", ANY, True), ("get", "pods", ANY, True),
        ("list", "events", ANY, True), ("get", "pods/log", ANY, True),
        ("list", "pods", ANY, False), ("delete", "pods", ANY, False), ("patch", "configmaps", ANY, False),
    ],
    "rexec-lambda-list": [
        ("list", "configmaps", "", True), ("list", "pods", "", True), ("list", "namespaces", "", True),
        ("get", "pods", ANY, False), ("delete", "pods", ANY, False),
    ],
    "rexec-lambda-reap": [
        ("list", "namespaces", "", True), ("delete", "namespaces", "", True), ("create", "namespaces", "", False),
        ("list", "configmaps", "", True), ("patch", "configmaps", ANY, True), ("delete", "configmaps", ANY, True),
        ("list", "pods", "", True), ("delete", "pods", ANY, True), ("create", "pods", ANY, False),
        ("list", "pods.metrics.k8s.io", "", True),
        ("list", "jobs.batch", ENVIRONMENTS, True), ("create", "jobs.batch", ENVIRONMENTS, True),
        ("delete", "jobs.batch", ENVIRONMENTS, True), ("create", "jobs.batch", ANY, False),
        ("create", "configmaps", ENVIRONMENTS, True), ("create", "configmaps", ANY, False),
    ],
    "rexec-lambda-broker": [
        ("get", "services", "rexec", True), ("get", "services", "default", False), ("list", "services", "rexec", False),
    ],
}
# What no identity may do.
NONE_MAY = [
    ("get", "secrets", ANY), ("list", "secrets", ""), ("get", "secrets", "kube-system"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""), ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "users", ""), ("impersonate", "groups", ""), ("impersonate", "serviceaccounts", ANY),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""), ("create", "rolebindings.rbac.authorization.k8s.io", ANY),
    ("create", "pods/exec", ANY), ("update", "validatingadmissionpolicies.admissionregistration.k8s.io", ""),
]


def can(control_plane, identity: str, verb: str, resource: str, namespace: str) -> bool:
    """The API server's answer to `identity`'s SelfSubjectAccessReview (`resource` may name its
    group, `jobs.batch`, and a subresource, `pods/log`)."""
    resource, _, subresource = resource.partition("/")
    resource, _, group = resource.partition(".")
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group,
                                              "subresource": subresource, "namespace": namespace}}}
    answer = control_plane.kubectl("create", "-o", "json", "-f", "-", identity=identity, input=json.dumps(review))
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)["status"]["allowed"]


@pytest.mark.parametrize("identity", sorted(MAY))
def test_each_function_may_do_what_its_table_says_and_none_of_what_matters(control_plane, identity):
    wrong = [(verb, resource, ns, allowed) for verb, resource, ns, allowed in MAY[identity]
             if can(control_plane, identity, verb, resource, ns) != allowed]
    assert wrong == [], f"{identity}: RBAC answers otherwise for {wrong}"
    allowed = [row for row in NONE_MAY if can(control_plane, identity, *row)]
    assert allowed == [], f"{identity} may {allowed}"


def with_(obj: dict, change) -> dict:
    copy = json.loads(json.dumps(obj))
    change(copy)
    return copy


# The kinds the spawner writes by server-side apply; it creates the others.
APPLIED = {"ResourceQuota", "LimitRange", "NetworkPolicy", "PersistentVolumeClaim"}


def write(control_plane, obj: dict, identity: str, *flags: str) -> subprocess.CompletedProcess:
    """`obj` written as the functions write it, as `identity`."""
    verb = ["apply", "--server-side", "--field-manager=rexec-lambda"] if obj["kind"] in APPLIED else ["create"]
    return control_plane.kubectl(*verb, *flags, "-f", "-", identity=identity, input=json.dumps(obj))


def refused_by(control_plane, obj: dict, identity: str = "rexec-lambda-spawn") -> str | None:
    """What refused a server-side dry run of writing `obj` as `identity`: the policy's name, or
    `PodSecurity`; None when admitted."""
    made = write(control_plane, obj, identity, "--dry-run=server")
    if made.returncode == 0:
        return None
    for name in ("rexec-lambda-namespaces", "rexec-lambda-namespaced-writes", "rexec-lambda-pods",
                 "rexec-lambda-claims", "rexec-lambda-builds"):
        if f"ValidatingAdmissionPolicy '{name}'" in made.stderr:
            return name
    if "violates PodSecurity" in made.stderr:
        return "PodSecurity"
    return made.stderr.strip()


@pytest.fixture(scope="module")
def written(control_plane):
    """What a first spawn writes, rendered by the functions' code, its namespace and guard rails
    created as the spawn function's identity."""
    objects = rendered("spawn", "cp-1")
    assert objects["namespace"]["metadata"]["name"] == NS
    for kind in ("namespace", "quota", "limits", "network_policy", "environment_claim", "claim"):
        made = write(control_plane, objects[kind], "rexec-lambda-spawn")
        assert made.returncode == 0, f"{kind}: {made.stderr}"
    # A second namespace, holding no claim yet: a claim is immutable once made.
    second = with_(objects["namespace"], lambda o: o["metadata"].update(name=FRESH))
    made = write(control_plane, second, "rexec-lambda-spawn")
    assert made.returncode == 0, made.stderr
    return objects


FRESH = "rexec-cp-2"


def spec(path):
    """A change to an object's pod spec (a pod's own, or a Job's template's)."""
    def change(obj):
        pod = obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj["spec"]
        path(pod)
    return change


HOSTILE = {
    "pod: an image outside the allow-list": ("pod", spec(lambda p: p["containers"][0].update(image="evil.example/miner")),
                                             "rexec-lambda-pods"),
    "pod: a service-account token": ("pod", spec(lambda p: p.update(automountServiceAccountToken=True)),
                                     "rexec-lambda-pods"),
    "pod: the environment's mount writable": ("pod", spec(lambda p: p["initContainers"][0]["volumeMounts"][0].update(
        readOnly=False)), "rexec-lambda-pods"),
    "pod: a renamed claim mounted whole": ("pod", spec(lambda p: (
        p["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "rexec-environments"}}),
        p["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/opt/data", "readOnly": True}))),
        "rexec-lambda-pods"),
    "build: a renamed claim mounted whole": ("build_job", spec(lambda p: (
        p["volumes"].append({"name": "data", "persistentVolumeClaim": {"claimName": "rexec-environments"}}),
        p["containers"][0]["volumeMounts"].append({"name": "data", "mountPath": "/opt/data"}))), "rexec-lambda-builds"),
    "pod: another claim": ("pod", spec(lambda p: p["volumes"][0]["persistentVolumeClaim"].update(claimName="data")),
                           "rexec-lambda-pods"),
    "pod: the host's network": ("pod", spec(lambda p: p.update(hostNetwork=True)), "PodSecurity"),
    "pod: a node named": ("pod", spec(lambda p: p.update(nodeName="kwok-node-0")), "rexec-lambda-pods"),
    "pod: a priority class": ("pod", spec(lambda p: p.update(priorityClassName="system-node-critical")),
                              "rexec-lambda-pods"),
    "pod: a toleration": ("pod", spec(lambda p: p.update(tolerations=[{"operator": "Exists"}])), "rexec-lambda-pods"),
    "pod: another environment's build": ("pod", spec(lambda p: p["containers"][0]["volumeMounts"][0].update(
        subPath="b" * 64 + "/1")), "rexec-lambda-pods"),
    "build: a second container": ("build_job", spec(lambda p: p["containers"].append(
        dict(p["containers"][0], name="second"))), "rexec-lambda-builds"),
    "build: another environment's directory": ("build_job", spec(lambda p: p["containers"][0]["volumeMounts"][0].update(
        subPath="b" * 64 + "/1")), "rexec-lambda-builds"),
    "pod: in kube-system": ("pod", lambda o: o["metadata"].update(namespace="kube-system"),
                            "rexec-lambda-namespaced-writes"),
    "build: no deadline": ("build_job", lambda o: o["spec"].pop("activeDeadlineSeconds"), "rexec-lambda-builds"),
    "build: retries": ("build_job", lambda o: o["spec"].update(backoffLimit=3), "rexec-lambda-builds"),
    "build: an image outside the allow-list": ("build_job", spec(lambda p: p["containers"][0].update(image="evil.example/x")),
                                               "rexec-lambda-builds"),
    "build: a shell instead of the build script": ("build_job", spec(lambda p: p["containers"][0].update(
        command=["sh", "-c", "pip install evil"])), "rexec-lambda-builds"),
    "build: a line added to the build script": ("build_job", spec(lambda p: p["containers"][0]["command"].__setitem__(
        2, p["containers"][0]["command"][2] + "import evil\n")), "rexec-lambda-builds"),
    "build: PYTHONPATH set": ("build_job", spec(lambda p: p["containers"][0]["env"].append(
        {"name": "PYTHONPATH", "value": "/opt/rexec/requirements"})), "rexec-lambda-builds"),
    "build: run from the requirements' folder": ("build_job", spec(lambda p: p["containers"][0].update(
        workingDir="/opt/rexec/requirements")), "rexec-lambda-builds"),
    "pod: an image by its tag alone": ("pod", spec(lambda p: p["containers"][0].update(
        image=p["containers"][0]["image"].split("@")[0])), "rexec-lambda-pods"),
    "build: an image by its tag alone": ("build_job", spec(lambda p: p["containers"][0].update(
        image=p["containers"][0]["image"].split("@")[0])), "rexec-lambda-builds"),
    "claim: writable": ("environment_claim", lambda o: o["spec"].update(accessModes=["ReadWriteMany"]),
                        "rexec-lambda-claims"),
    "namespace: not ours": ("namespace", lambda o: o["metadata"].update(labels={}, name="someone-else"),
                            "rexec-lambda-namespaces"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_admission_refuses_each_hostile_variant_by_its_policy_and_admits_its_original(control_plane, written, case):
    kind, change, refuser = HOSTILE[case]
    # Written where nothing of its kind is yet: a namespace of another name, a claim elsewhere.
    elsewhere = {"namespace": lambda o: o["metadata"].update(name="rexec-cp-3"),
                 "environment_claim": lambda o: o["metadata"].update(namespace=FRESH),
                 # A name no spawn of the session made (the policy reads its labels, not its name).
                 "build_job": lambda o: o["metadata"].update(name=o["metadata"]["name"] + "-dry-run")}
    original = with_(written[kind], elsewhere.get(kind, lambda o: None))
    assert refused_by(control_plane, original) is None, f"{kind} as written is admitted"
    assert refused_by(control_plane, with_(original, change)) == refuser


def test_a_cleanup_is_admitted_in_its_shape_only(control_plane):
    cleanup = rendered("cleanup", "aaaa", "a" * 64, "2", "python:3.11-slim@sha256:" + "0" * 64)
    assert refused_by(control_plane, cleanup, identity="rexec-lambda-reap") is None
    another = with_(cleanup, spec(lambda p: p["containers"][0].update(command=["sh", "-c", "rm -rf /opt"])))
    assert refused_by(control_plane, another, identity="rexec-lambda-reap") == "rexec-lambda-builds"


def test_a_pod_is_scheduled_on_a_kwok_node_and_turns_ready(control_plane):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "scheduled", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "python:3.11-slim"}]}}
    made = control_plane.kubectl("create", "-f", "-", input=json.dumps(pod))
    assert made.returncode == 0, made.stderr
    waited = control_plane.kubectl("wait", "--for=condition=Ready", "pod/scheduled", "-n", "default", "--timeout=60s")
    assert waited.returncode == 0, waited.stderr
    shown = json.loads(control_plane.kubectl("get", "pod", "scheduled", "-n", "default", "-o", "json").stdout)
    assert shown["spec"]["nodeName"].startswith("kwok-node-")
    assert shown["status"]["phase"] == "Running"
    events = control_plane.kubectl("get", "events", "-n", "default", "--field-selector", "involvedObject.name=scheduled")
    assert "Scheduled" in events.stdout, events.stdout
    described = control_plane.kubectl("describe", "pod", "scheduled", "-n", "default")
    assert described.returncode == 0 and "kwok-node-" in described.stdout
    # Through the node, as a kubelet serves a container's log.
    logs = control_plane.kubectl("logs", "scheduled", "-n", "default")
    assert logs.returncode == 0, logs.stderr
    assert "kwok simulates this container" in logs.stdout
