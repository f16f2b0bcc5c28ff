"""Fixtures that run the system locally for the published Python clients.

The real control plane (`scripts/cluster --install`) is started once per session: `control_plane`. The stack is started the one way the README starts it, `scripts/dev` (with
`--ignore-changes`), on free 127.0.0.1 ports (`PORT=0`), once per session, on that control plane
(its functions' kubeconfig, a context per function); `identity` is its identity service, read
from its ready line. `running_stack` runs any such command and, when it ends, checks that nothing
it started is left.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from kube_admin import Admin

ROOT = Path(__file__).resolve().parents[2]
# Started as a shell's background job, pytest inherits SIGINT ignored, and so would every stack it
# starts, which then could not be stopped with Ctrl-C: take SIGINT back, so that the children
# start with its default.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Settings of the caller's environment that would point the stack elsewhere, besides AUTH_*.
STACK_SETTINGS = ("KUBECONFIG", "KUBE_CONTEXT", "KUBE_AS_FUNCTION", "EKS_CLUSTER_NAME",
                  "GROUP_NAMES", "ADMIN_GROUP_NAMES", "ENABLE_GROUP_BASED_ACCESS")
# What scripts/keycloak exits with when Java or the download is missing.
KEYCLOAK_MISSING = 3


def processes_with(marker: bytes) -> list[str]:
    """The command lines of processes whose environment holds `marker` (descendants inherit it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if marker in environ.read().split(b"\0"):
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        args = cmdline.read().replace(b"\0", b" ").decode()
                    found.append(f"{pid}: {args}")
        except OSError:
            continue
    return found


def answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
        return True
    except requests.ConnectionError:
        return False


class StackExited(AssertionError):
    def __init__(self, command: list[str], returncode: int, log: Path):
        super().__init__(f"{command} exited ({returncode}); see {log}")
        self.returncode = returncode


class Stack:
    """A running stack: its ready line, its process, its environment and its log."""

    def __init__(self, ready: dict, proc: subprocess.Popen, env: dict, marker: bytes, log: Path):
        self.ready = ready
        self.proc = proc
        self.env = env
        self.marker = marker
        self.log = log
        self.base = ready["ready"]
        self.port = int(env["PORT"])


@contextlib.contextmanager
def running_stack(command: list[str], extra_env: dict[str, str], log: Path, stop=signal.SIGINT, ready_within=900):
    """Runs `command` (scripts/dev or make dev) until its JSON ready line; yields a Stack; then
    sends `stop` to it (SIGINT: Ctrl-C to its whole process group; SIGKILL: to the script alone,
    which gets no chance to clean up) and checks that nothing it started is left."""
    run = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k not in STACK_SETTINGS and not k.startswith("AUTH_")}
    env.update(extra_env, PORT="0", REXEC_DEV_TEST=run)
    marker = f"REXEC_DEV_TEST={run}".encode()
    port = folder = None
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + ready_within
        ready = None
        while ready is None:
            for line in log.read_text().splitlines():
                if line.startswith("{") and '"ready"' in line:
                    ready = json.loads(line)
            if proc.poll() is not None and not ready:
                raise StackExited(command, proc.returncode, log)
            assert time.monotonic() < deadline, f"no ready line; see {log}"
            time.sleep(0.5)
        port = urlsplit(ready["ready"]).port
        env["PORT"] = str(port)
        # The folder of a control plane it started (certificates, etcd's data), which it removes
        # when it stops.
        started_one = "rexec-cluster-" in (ready.get("kubeconfig") or "") and "KUBECONFIG" not in extra_env
        folder = Path(ready["kubeconfig"]).parent if started_one else None
        yield Stack(ready, proc, env, marker, log)
    finally:
        if proc.poll() is None:
            if stop == signal.SIGINT:
                os.killpg(proc.pid, signal.SIGINT)
            else:
                os.kill(proc.pid, stop)
            proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(marker) == [], f"processes left behind; see {log}"
    for offset in (0, 1, 2) if port else ():
        assert not answers(port + offset), f"port {port + offset} still answers"
    if port and folder:
        assert not folder.exists(), f"{folder} left behind; see {log}"


class Identity:
    def __init__(self, url: str, token_url: str):
        self.url = url
        self.token_url = token_url

    def token(self, user: str) -> str:
        resp = requests.post(self.token_url, json={"user": user}, timeout=5)
        resp.raise_for_status()
        return resp.json()["token"]


class Api:
    def __init__(self, base: str):
        self.base = base
        self.ndp = f"{base}/api"
        self.rexec = f"{base}/rexec"


def dev_stack(control_plane, settings: dict[str, str], log: Path):
    """`scripts/dev --ignore-changes` on the session's control plane, with `settings`."""
    on_the_plane = {"KUBECONFIG": control_plane.functions_kubeconfig,
                    # Pods here run nothing: no source is fetched, no image pulled, no digest checked.
                    "REXEC_SERVER_SOURCE_SHA256": "0" * 64,
                    "REXEC_SERVER_IMAGE_DIGESTS": ",".join(f"3.1{n}=sha256:{'0' * 64}" for n in range(4)),
                    # The tests spawn as few callers, many times a minute.
                    "REXEC_SPAWNS_PER_MINUTE": "120"}
    return running_stack([str(ROOT / "scripts" / "dev"), "--ignore-changes"], {**on_the_plane, **settings}, log)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, control_plane):
    """The local stack, as `scripts/dev` runs it, with the development identity service, on the
    session's control plane."""
    # Two workshop users besides alice, bob and eve: user-002 is test_admin_routes' caller
    # (user-001 spawns on the same control plane from test_pod_runs' stack).
    settings = {"IDENTITY_STAND_IN_USERS": "2"}
    with dev_stack(control_plane, settings, tmp_path_factory.mktemp("stack") / "scripts-dev.log") as s:
        yield s


@pytest.fixture(scope="session")
def identity(stack):
    return Identity(stack.ready["identity"], stack.ready["token_url"])


@pytest.fixture(scope="session")
def api(stack):
    return Api(stack.base)


class ControlPlane:
    """A running control plane (scripts/cluster): its ready line, and kubectl as its administrator
    or as one of the functions' identities."""

    def __init__(self, ready: dict):
        self.ready = ready
        self.server = ready["ready"]
        self.tokens = ready["tokens"]
        self.ca = str(Path(ready["dir"]) / "ca.crt")
        self.functions_kubeconfig = ready["functions_kubeconfig"]
        # The object at an API path, as the administrator reads it.
        self.get = Admin(ready["kubeconfig"]).get

    def kubectl(self, *args: str, identity: str | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        """kubectl as the administrator, or as `identity` (a group of deploy/k8s/rbac.yaml)."""
        # An identity of ours may not list the cluster's CRDs, which kubectl's own schema check
        # reads: the API server validates what it is sent anyway.
        who = (["--server", self.server, "--certificate-authority", self.ca, "--token", self.tokens[identity],
                "--validate=false"] if identity else ["--kubeconfig", self.ready["kubeconfig"]])
        return subprocess.run([self.ready["kubectl"], *who, *args], input=input, capture_output=True, text=True,
                              timeout=60)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    """The real control plane, started once for the session (built first if this machine has not
    yet: that can take twenty minutes), with the project's manifests installed as an operator
    installs them (`--install`, which fails when one does not apply). Without Go it is skipped,
    except in CI, where that is a failure."""
    if shutil.which("go") is None and not os.environ.get("CI"):
        pytest.skip("the real control plane needs Go (1.26 or later) on PATH")
    log = tmp_path_factory.mktemp("cluster") / "scripts-cluster.log"
    with running_stack([str(ROOT / "scripts" / "cluster"), "--install"], {}, log, ready_within=3600) as running:
        yield ControlPlane(running.ready)


class Keycloak:
    """A running Keycloak (scripts/keycloak) with the realms of tests/keycloak/: a user's password
    is `<user>-password`, a confidential client's secret `<client>-test-secret`."""

    def __init__(self, ready: dict, log: Path):
        self.ready = ready
        self.url = ready["ready"]
        self.log = log

    def issuer(self, realm: str = "ndp") -> str:
        return f"{self.url}/realms/{realm}"

    def grant(self, form: dict, realm: str = "ndp") -> dict:
        answer = requests.post(f"{self.issuer(realm)}/protocol/openid-connect/token", data=form, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def password_grant(self, user: str, client: str = "ndp-tests", scope: str = "openid") -> str:
        form = {"grant_type": "password", "client_id": client, "username": user, "password": f"{user}-password",
                "scope": scope}
        return self.grant(form)["access_token"]

    def client_credentials(self, client: str) -> str:
        form = {"grant_type": "client_credentials", "client_id": client, "client_secret": f"{client}-test-secret"}
        return self.grant(form)["access_token"]


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory):
    """A real Keycloak, started once for the session (downloaded and built first if this machine
    has not yet). Without Java or its download it is skipped, except in CI, where that is a
    failure."""
    log = tmp_path_factory.mktemp("keycloak") / "scripts-keycloak.log"
    with contextlib.ExitStack() as running:
        try:
            started = running.enter_context(running_stack([str(ROOT / "scripts" / "keycloak")], {}, log,
                                                          ready_within=900))
        except StackExited as e:
            if e.returncode == KEYCLOAK_MISSING and not os.environ.get("CI"):
                pytest.skip(f"Keycloak cannot run here: {log.read_text().strip()}")
            raise
        yield Keycloak(started.ready, log)


def rendered(*args: str) -> dict:
    """A manifest the functions write, rendered by their own code (tests/src/bin/render-manifest.rs)."""
    out = subprocess.run([str(ROOT / "target" / "debug" / "render-manifest"), *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)
