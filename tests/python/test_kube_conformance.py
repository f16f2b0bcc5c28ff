"""One conformance suite, run against the real control plane (scripts/cluster) and against the
Kubernetes stand-in, judged by a client nobody here wrote: the official Python client
(`kubernetes`) drives every kind and verb the project uses, and both must answer as the API
conventions say: objects the client can read at every stage, selectors, optimistic concurrency,
delete preconditions, server-side apply, terminating namespaces, quotas, logs, watches, and no
access without credentials. Where the stand-in answered otherwise than the real API server, the
stand-in was fixed."""

import json
import subprocess
import time
import uuid

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from conftest import ROOT


@pytest.fixture(scope="module", params=["control plane", "stand-in"])
def cluster(request, tmp_path_factory):
    """The cluster under test: its url, kubeconfig (an administrator's) and CA."""
    if request.param == "control plane":
        plane = request.getfixturevalue("control_plane")
        yield {"url": plane.server, "kubeconfig": plane.ready["kubeconfig"], "ca": plane.ca, "stand_in": False}
        return
    kubeconfig = tmp_path_factory.mktemp("stand-in") / "kubeconfig"
    process = subprocess.Popen([str(ROOT / "target" / "debug" / "kube-stand-in"), "0", str(kubeconfig)],
                               stdout=subprocess.PIPE, text=True)
    try:
        yield {**json.loads(process.stdout.readline()), "ca": None, "stand_in": True}
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def api(cluster):
    return config.new_client_from_config(config_file=cluster["kubeconfig"])


@pytest.fixture
def namespace(api):
    core = client.CoreV1Api(api)
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "rexec-lambda"}}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException:
        pass


def refused(call, *args, **kwargs) -> tuple[int, str]:
    """The status and reason of a refusal (no reason when the body is not a Status: the API
    server answers a path it does not serve in plain text)."""
    with pytest.raises(ApiException) as caught:
        call(*args, **kwargs)
    try:
        return caught.value.status, json.loads(caught.value.body).get("reason", "")
    except json.JSONDecodeError:
        return caught.value.status, ""


def test_requests_without_credentials_are_refused(cluster):
    anonymous = client.Configuration(host=cluster["url"])
    anonymous.ssl_ca_cert = cluster["ca"]
    # 401 unauthenticated, or 403 where anonymous requests are authenticated as system:anonymous.
    assert refused(client.CoreV1Api(client.ApiClient(anonymous)).list_namespace)[0] in (401, 403)


def test_namespaces_terminate_refuse_content_and_go(api):
    core = client.CoreV1Api(api)
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    created = core.create_namespace({"metadata": {"name": name}})
    assert created.status.phase == "Active" and created.metadata.uid
    assert refused(core.create_namespace, {"metadata": {"name": name}}) == (409, "AlreadyExists")
    assert refused(core.create_namespace, {"metadata": {"name": "Not_A_Label"}}) == (422, "Invalid")
    applied = core.patch_namespace(
        name,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"a": "b"}}},
        field_manager="conformance",
        _content_type="application/apply-patch+yaml",
    )
    assert applied.metadata.labels["a"] == "b"
    wrong = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=str(uuid.uuid4())))
    assert refused(core.delete_namespace, name, body=wrong) == (409, "Conflict")
    right = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=created.metadata.uid))
    core.delete_namespace(name, body=right)
    assert core.read_namespace(name).status.phase == "Terminating"
    assert refused(core.create_namespaced_config_map, name, {"metadata": {"name": "x"}})[0] == 403
    # A second delete: 409 while the namespace controller empties it, accepted once it has
    # (the real API server answers either, by timing; the stand-in, the first).
    try:
        core.delete_namespace(name)
    except ApiException as going:
        assert going.status in (404, 409)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            core.read_namespace(name)
            time.sleep(0.2)
        except ApiException as gone:
            assert gone.status == 404
            return
    pytest.fail("the namespace never went")


def test_writes_with_a_stale_resource_version_conflict(api, namespace):
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "claim"}, "data": {"a": "1"}})
    fresh = core.read_namespaced_config_map("claim", namespace)
    fresh.data = {"a": "2"}
    replaced = core.replace_namespaced_config_map("claim", namespace, fresh)
    assert replaced.metadata.resource_version != cm.metadata.resource_version
    cm.data = {"a": "3"}
    assert refused(core.replace_namespaced_config_map, "claim", namespace, cm) == (409, "Conflict")
    assert core.read_namespaced_config_map("claim", namespace).data == {"a": "2"}
    assert refused(core.read_namespaced_config_map, "missing", namespace) == (404, "NotFound")


def test_pods_read_at_every_stage_listed_by_selectors_and_deleted_with_preconditions(api, namespace):
    core = client.CoreV1Api(api)
    container = {"name": "server", "image": "python:3.11-slim", "command": ["python", "-c", "pass"]}
    pod = core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "rexec-server-1", "labels": {"app": "rexec"}},
         "spec": {"initContainers": [dict(container, name="install")], "containers": [container]}},
    )
    phases = set()
    # kwok moves a pod through each stage within 1 to 6 s.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        read = core.read_namespaced_pod("rexec-server-1", namespace)
        phases.add(read.status.phase)
        statuses = (read.status.init_container_statuses or []) + (read.status.container_statuses or [])
        for status in statuses:
            assert status.image == "python:3.11-slim"
        if any(c.type == "Ready" and c.status == "True" for c in read.status.conditions or []):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"the pod never became Ready: {phases}")
    assert {"Pending", "Running"} <= phases
    assert [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=rexec").items] == ["rexec-server-1"]
    assert core.list_namespaced_pod(namespace, label_selector="app=other").items == []
    listed = lambda selector: [p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items]
    assert listed("app in (other, rexec),!gone") == ["rexec-server-1"]
    assert listed("app notin (rexec)") == []
    assert listed("tier notin (web)") == ["rexec-server-1"]  # an absent key is not in any set
    assert listed("app in (other)") == []
    assert refused(core.list_namespaced_pod, namespace, label_selector="app in (rexec") == (400, "BadRequest")
    assert refused(core.list_namespaced_event, namespace, field_selector="type in (Normal)") == (400, "BadRequest")
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=rexec-server-1").items
    assert events and all(e.involved_object.name == "rexec-server-1" for e in events)
    wrong = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=str(uuid.uuid4())))
    assert refused(core.delete_namespaced_pod, "rexec-server-1", namespace, body=wrong) == (409, "Conflict")
    assert core.read_namespaced_pod("rexec-server-1", namespace).metadata.deletion_timestamp is None
    right = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=pod.metadata.uid))
    core.delete_namespaced_pod("rexec-server-1", namespace, body=right)
    assert core.read_namespaced_pod("rexec-server-1", namespace).metadata.deletion_timestamp is not None


def test_logs_are_served_as_the_kubelet_serves_them(api, cluster, namespace):
    core = client.CoreV1Api(api)
    container = {"name": "server", "image": "python:3.11-slim", "command": ["python", "-c", "pass"]}
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "rexec-server-1"},
         "spec": {"initContainers": [dict(container, name="install")], "containers": [container]}},
    )
    # Once the init container runs, its log answers.
    deadline = time.monotonic() + 60
    while True:
        try:
            log = core.read_namespaced_pod_log("rexec-server-1", namespace, container="install", tail_lines=20)
            break
        except ApiException as starting:
            assert starting.status == 400 and time.monotonic() < deadline, starting.body
            time.sleep(0.3)
    # kwok's says what it simulates, once it serves it; the stand-in's init container printed nothing.
    assert not log or "kwok simulates this container" in log, log
    if cluster["stand_in"]:
        # The stand-in also refuses the log of a container waiting to start, as a kubelet does;
        # kwok serves a container's log whatever its state.
        with pytest.raises(ApiException) as waiting:
            core.read_namespaced_pod_log("rexec-server-1", namespace)
        assert (waiting.value.status, json.loads(waiting.value.body)["message"]) == (
            400, 'container "server" in pod "rexec-server-1" is waiting to start: PodInitializing')
    assert refused(core.read_namespaced_pod_log, "rexec-server-1", namespace, container="nope") == (400, "BadRequest")
    assert refused(core.read_namespaced_pod_log, "rexec-server-2", namespace) == (404, "NotFound")
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": "two"}, "spec": {"containers": [container, dict(container, name="sidecar")]}}
    )
    with pytest.raises(ApiException) as unnamed:
        core.read_namespaced_pod_log("two", namespace)
    assert json.loads(unnamed.value.body)["message"] == (
        "a container name must be specified for pod two, choose one of: [server sidecar]"
    )


def test_lists_come_in_pages(api, namespace):
    core = client.CoreV1Api(api)
    for i in range(5):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"page-{i}", "labels": {"page": "yes"}}})
    names, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(namespace, label_selector="page=yes", limit=2, _continue=token)
        pages += 1
        names += [c.metadata.name for c in page.items]
        assert len(page.items) <= 2
        token = page.metadata._continue
        if not token:
            break
        # Counted for an unfiltered list only.
        assert page.metadata.remaining_item_count is None
    assert (names, pages) == ([f"page-{i}" for i in range(5)], 3)
    first = core.list_namespaced_config_map(namespace, limit=2)
    assert first.metadata.remaining_item_count == len(core.list_namespaced_config_map(namespace).items) - 2
    assert refused(core.list_namespaced_config_map, namespace, limit=2, _continue="not-a-token") == (400, "BadRequest")


def test_the_metrics_api_lists_pod_metrics_and_knows_no_pod_without_them(api, namespace):
    """metrics-server on the control plane, installed in the stand-in as `kube-stand-in` runs it
    (a test of the stand-in's own installs it, or leaves it absent: a plain-text 404)."""
    metrics = client.CustomObjectsApi(api)
    listed = metrics.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", namespace, "pods")
    assert (listed["kind"], listed["apiVersion"]) == ("PodMetricsList", "metrics.k8s.io/v1beta1")
    for item in listed["items"]:
        assert item["metadata"]["namespace"] == namespace and item["window"]
        assert all("cpu" in c["usage"] and "memory" in c["usage"] for c in item["containers"])
    assert refused(metrics.get_namespaced_custom_object, "metrics.k8s.io", "v1beta1", namespace, "pods",
                   "nowhere") == (404, "NotFound")


def test_guard_rails_by_server_side_apply(api, namespace):
    core = client.CoreV1Api(api)
    networking = client.NetworkingV1Api(api)
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "rexec-quota", "namespace": namespace},
             "spec": {"hard": {"pods": "2"}}}
    apply = {"field_manager": "conformance", "_content_type": "application/apply-patch+yaml"}
    core.patch_namespaced_resource_quota("rexec-quota", namespace, quota, **apply)
    # A ConfigMap: no controller writes it meanwhile, as the quota controller writes a quota's status.
    record = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "namespace": namespace},
              "data": {"a": "1"}}
    created = core.patch_namespaced_config_map("applied", namespace, record, **apply)
    again = core.patch_namespaced_config_map("applied", namespace, record, **apply)
    assert again.metadata.resource_version == created.metadata.resource_version, "an unchanged apply writes nothing"
    quota["spec"]["hard"]["pods"] = "3"
    assert core.patch_namespaced_resource_quota("rexec-quota", namespace, quota, **apply).spec.hard["pods"] == "3"
    assert refused(core.patch_namespaced_resource_quota, "rexec-quota", namespace, quota,
                   _content_type="application/apply-patch+yaml") == (422, "Invalid"), "apply needs a field manager"
    limits = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "rexec-limits", "namespace": namespace},
              "spec": {"limits": [{"type": "Container", "max": {"memory": "4Gi"}}]}}
    core.patch_namespaced_limit_range("rexec-limits", namespace, limits, **apply)
    assert core.read_namespaced_limit_range("rexec-limits", namespace).spec.limits[0].max["memory"] == "4Gi"
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "rexec-egress", "namespace": namespace},
              "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [],
                       "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}]}}
    networking.patch_namespaced_network_policy("rexec-egress", namespace, policy, **apply)
    read = networking.read_namespaced_network_policy("rexec-egress", namespace)
    assert read.spec.egress[0].to[0].ip_block._except == ["10.0.0.0/8"]


def test_an_apply_drops_what_its_manager_no_longer_applies(api, namespace):
    core = client.CoreV1Api(api)
    record = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "record", "namespace": namespace, "annotations": {"kept": "1", "cleaning": "2"}}}
    apply = {"field_manager": "conformance", "_content_type": "application/apply-patch+yaml"}
    core.patch_namespaced_config_map("record", namespace, record, **apply)
    core.patch_namespaced_config_map("record", namespace, {"metadata": {"annotations": {"other": "x"}}},
                                     _content_type="application/merge-patch+json")
    del record["metadata"]["annotations"]["cleaning"]
    read = core.patch_namespaced_config_map("record", namespace, record, **apply)
    assert read.metadata.annotations == {"kept": "1", "other": "x"}, "another writer's field stays"


def test_quota_admits_pods_by_their_compute_resources(api, namespace):
    core = client.CoreV1Api(api)
    core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "compute"}, "spec": {"hard": {
        "pods": "5", "requests.cpu": "1", "limits.memory": "1Gi"}}})
    # The quota counts once its controller has read it (its status says so): a quota made a
    # moment ago may not be in the admission plug-in's view yet.
    deadline = time.monotonic() + 30
    while not (core.read_namespaced_resource_quota("compute", namespace).status or client.V1ResourceQuotaStatus()).hard:
        assert time.monotonic() < deadline, "the quota's status was never made"
        time.sleep(0.2)

    def pod(name, cpu, memory=None):
        resources = {"requests": {"cpu": cpu}}
        if memory:
            resources["limits"] = {"memory": memory}
        return {"metadata": {"name": name}, "spec": {"containers": [
            {"name": "server", "image": "python:3.11-slim", "resources": resources}]}}

    core.create_namespaced_pod(namespace, pod("first", "600m", "512Mi"))
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(namespace, pod("second", "600m", "256Mi"))
    assert caught.value.status == 403
    assert "exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1" in (
        json.loads(caught.value.body)["message"])
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_pod(namespace, pod("unbounded", "100m"))
    assert caught.value.status == 403 and "must specify limits.memory" in json.loads(caught.value.body)["message"]
    core.create_namespaced_pod(namespace, pod("small", "400m", "512Mi"))
    status = core.read_namespaced_resource_quota("compute", namespace).status
    assert status.hard == {"pods": "5", "requests.cpu": "1", "limits.memory": "1Gi"}
    assert status.used == {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}


def test_the_broker_service_is_read(api):
    service = client.CoreV1Api(api).read_namespaced_service("rexec-broker", "rexec")
    assert {p.port for p in service.spec.ports} == {5559, 5560}
    assert service.status.load_balancer.ingress[0].ip == "127.0.0.1"


def test_a_watch_sees_a_pod_added_changed_and_deleted(api, namespace):
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_pod(namespace)
    container = {"name": "server", "image": "python:3.11-slim", "command": ["python", "-c", "pass"]}
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": "watched"}, "spec": {"initContainers": [dict(container, name="install")], "containers": [container]}},
    )
    seen, deleted = [], False
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod,
        namespace,
        field_selector="metadata.name=watched",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=60,
    ):
        pod = event["object"]
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        seen.append((event["type"], pod.status.phase, ready))
        if ready and not deleted:
            core.delete_namespaced_pod("watched", namespace)
            deleted = True
        if event["type"] == "DELETED":
            stream.stop()
    assert seen[0][0] == "ADDED", seen
    assert ("MODIFIED", "Running", True) in seen, seen
    assert seen[-1][0] == "DELETED", seen
    # From a version not reached yet: nothing until it is (etcd waits for a future revision).
    ahead = str(int(listed.metadata.resource_version) + 1_000_000)
    assert list(watch.Watch().stream(core.list_namespaced_pod, namespace, resource_version=ahead, timeout_seconds=3)) == []
