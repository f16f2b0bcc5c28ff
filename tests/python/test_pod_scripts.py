"""The Python a server's pod and a build run (`shared/src/server/pod/`), each run as the pod runs
it (`python -c <script>`), with the paths a container has (`/opt/rexec`, `/dev/termination-log`,
`/proc/net/tcp`) moved into a folder of the test: the build fetching, checking, installing and
bounding an environment; the wait following a build's log to its end; the probe reading the
kernel's table of connections; the wrapper passing on the server's exit and the signals it gets.
The pods themselves, on a kubelet's rules, are in `test_server_pod.py` and `test_pod_runs.py`.
"""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import ROOT

POD = ROOT / "shared" / "src" / "server" / "pod"


def source(script: str, root: Path) -> str:
    """`script` with the container's paths under `root`."""
    text = (POD / script).read_text()
    for path in ("/opt/rexec", "/dev/termination-log", "/proc/net/tcp"):
        text = text.replace(path, str(root) + path)
    (root / "dev").mkdir(parents=True, exist_ok=True)
    return text


def run(script: str, root: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Runs `script` as a pod does (`python -c`), to its end."""
    environment = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run([sys.executable, "-c", source(script, root)], env=environment, cwd=cwd or root,
                          capture_output=True, text=True, timeout=60, check=False)


def termination_log(root: Path) -> str:
    return (root / "dev" / "termination-log").read_text()


# --- probe.py: ready once a connection to the broker's port is established ---------------------

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def connections(root: Path, tcp: list[str] | None, tcp6: list[str] | None = None):
    net = root / "proc" / "net"
    net.mkdir(parents=True, exist_ok=True)
    for name, rows in (("tcp", tcp), ("tcp6", tcp6)):
        if rows is not None:
            (net / name).write_text(HEADER + "".join(f"   0: {row} 00000000:00000000 00:00000000 00000000 0 0 1\n" for row in rows))


@pytest.mark.parametrize("tcp, tcp6, ready", [
    (["0100007F:9C40 0A000001:15C8 01"], None, True),                      # established to :5576
    (["0100007F:9C40 0A000001:15C8 0A"], None, False),                     # listening, not connected
    (["0100007F:9C40 0A000001:15C9 01"], None, False),                     # another port
    ([], ["00000000000000000000000001000000:9C40 00000000000000000000FFFF0A000001:15C8 01"], True),
    (None, None, False),                                                   # no table at all
])
def test_the_probe_is_ready_only_while_connected_to_the_brokers_port(tmp_path, tcp, tcp6, ready):
    connections(tmp_path, tcp, tcp6)
    done = run("probe.py", tmp_path, {"REXEC_BROKER_PORT": "5576"})
    assert (done.returncode == 0) == ready, done.stderr
    if not ready:
        assert "no established connection to the broker" in done.stderr


# --- wait.py: the build's log, then its end --------------------------------------------------

@pytest.mark.parametrize("marker, code", [(".complete", 0), (".failed", 1)])
def test_the_wait_shows_the_builds_log_and_ends_as_the_build_did(tmp_path, marker, code):
    env = tmp_path / "opt" / "rexec" / "env"
    env.mkdir(parents=True)
    (env / ".log").write_bytes(b"rexec: installing\n")
    wait = subprocess.Popen([sys.executable, "-c", source("wait.py", tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.2)
    assert wait.poll() is None, "waits while the build runs"
    with open(env / ".log", "ab") as log:
        log.write(b"Installed 3 packages\n")
    text = "x" * 4000 + "the end"
    (env / marker).write_text(text)
    out, err = wait.communicate(timeout=10)
    assert wait.returncode == code, err
    assert out.startswith("rexec: waiting for the environment's build\nrexec: installing\nInstalled 3 packages\n"), out
    assert out.count("rexec: installing") == 1, "each line shown once"
    assert termination_log(tmp_path) == text[-3000:]


# --- serve.py: the server's wrapper ----------------------------------------------------------

def test_the_wrapper_exits_as_its_server_does(tmp_path):
    (tmp_path / "run_server.py").write_text("import sys; print(sys.argv[1:]); sys.exit(3)\n")
    done = run("serve.py", tmp_path, cwd=tmp_path)
    assert done.returncode == 3
    assert done.stdout.strip() == "[]"


def test_the_wrapper_passes_sigterm_to_its_server_and_exits_as_it_was_stopped(tmp_path):
    (tmp_path / "run_server.py").write_text(
        "import pathlib, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (pathlib.Path('stopped').write_text('yes'), exit(0)))\n"
        "pathlib.Path('started').write_text('yes')\n"
        "time.sleep(60)\n")
    wrapper = subprocess.Popen([sys.executable, "-c", source("serve.py", tmp_path)], cwd=tmp_path)
    for _ in range(100):
        if (tmp_path / "started").exists():
            break
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=10) == 0
    assert (tmp_path / "stopped").read_text() == "yes"
    (tmp_path / "run_server.py").write_text("import time; time.sleep(60)\n")
    wrapper = subprocess.Popen([sys.executable, "-c", source("serve.py", tmp_path)], cwd=tmp_path)
    time.sleep(0.5)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=10) == 128 + signal.SIGTERM, "a server stopped by a signal: 128 + its number"


# --- build.py: an environment fetched, checked, installed and bounded ---------------------------

def source_archive(path: Path) -> str:
    """A source archive as GitHub makes it (one top folder), and its SHA-256."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        body = b"print('rexec-server')\n"
        member = tarfile.TarInfo("rexec-server-main/run_server.py")
        member.size = len(body)
        archive.addfile(member, io.BytesIO(body))
    path.write_bytes(data.getvalue())
    return hashlib.sha256(data.getvalue()).hexdigest()


FAKE_UV = """#!{python}
import os, sys
target = sys.argv[sys.argv.index("--target") + 1]
for name, version in (("dill", "0.4.0"), ("scidx_rexec", "0.1.0")):
    info = os.path.join(target, name + "-" + version + ".dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as out:
        out.write("Metadata-Version: 2.1\\nName: " + name.replace("_", "-") + "\\nVersion: " + version + "\\n")
with open(os.path.join(target, "big"), "wb") as out:
    out.write(os.urandom(int(os.environ.get("FAKE_SIZE", "0"))))
print("Installed 2 packages")
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""


@pytest.fixture
def build(tmp_path):
    env = tmp_path / "opt" / "rexec" / "env"
    env.mkdir(parents=True)
    requirements = tmp_path / "opt" / "rexec" / "requirements"
    requirements.mkdir()
    (requirements / "requirements.txt").write_text("numpy\n")
    (requirements / "server-requirements.txt").write_text("scidx-rexec==0.1.0\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV.format(python=sys.executable))
    (bin_dir / "uv").chmod(0o755)
    archive = tmp_path / "source.tar.gz"
    digest = source_archive(archive)

    def go(**overrides):
        settings = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "REXEC_SERVER_SOURCE": archive.as_uri(),
                    "REXEC_SERVER_SOURCE_SHA256": digest, "REXEC_INSTALLER": "uv",
                    "REXEC_BUILD_MAX_BYTES": str(10 << 20), **overrides}
        return run("build.py", tmp_path, settings)
    return go, env, tmp_path


def test_a_build_records_what_it_installed(build):
    go, env, root = build
    done = go()
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((env / ".complete").read_text()) == {
        "python": ".".join(map(str, sys.version_info[:3])), "dill": "0.4.0", "scidx-rexec": "0.1.0"}
    assert (env / "server" / "run_server.py").exists(), "the archive's top folder is dropped"
    assert not (env / ".cache").exists(), "the installer's cache is removed"
    log = (env / ".log").read_text()
    assert "rexec: fetching the rexec-server source\n" in log and "Installed 2 packages\n" in log
    assert termination_log(root) == (env / ".complete").read_text()


def test_a_build_refuses_a_source_whose_digest_differs(build):
    go, env, _ = build
    done = go(REXEC_SERVER_SOURCE_SHA256="0" * 64)
    assert done.returncode == 1
    assert "is not REXEC_SERVER_SOURCE_SHA256" in (env / ".failed").read_text()
    assert not (env / "server").exists(), "nothing unpacked"


def test_a_build_fails_with_the_installers_last_lines(build):
    go, env, root = build
    done = go(FAKE_EXIT="2")
    assert done.returncode == 2
    assert (env / ".failed").read_text() == "Installed 2 packages\n"
    assert termination_log(root) == "Installed 2 packages\n"


def test_a_build_over_its_bound_is_emptied_and_fails(build):
    go, env, _ = build
    done = go(FAKE_SIZE=str(2 << 20), REXEC_BUILD_MAX_BYTES=str(1 << 20))
    assert done.returncode == 1
    assert sorted(p.name for p in env.iterdir()) == [".failed"], "everything but the marker removed"
    assert "more than REXEC_BUILD_MAX_SIZE allows (1048576)" in (env / ".failed").read_text()


def test_a_build_never_builds_into_a_directory_used_before(build):
    go, env, root = build
    (env / ".complete").write_text("{}")
    done = go()
    assert done.returncode == 1
    assert termination_log(root) == "the build's directory is not empty\n"
    assert (env / ".complete").read_text() == "{}", "left as it was"
