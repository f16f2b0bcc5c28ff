"""scripts/keycloak when what it needs is missing: a download that fails, one that is not the
pinned distribution, a Java older than 21. Each ends with status 3 and a line that says what
is wrong, and leaves nothing in the machine's cache but its lock. (Keycloak itself, started, is
`test_keycloak_clients.py`'s.)"""

import http.server
import os
import socket
import subprocess
import sys
import threading

import pytest
from conftest import KEYCLOAK_MISSING, ROOT

SCRIPT = ROOT / "scripts" / "keycloak"


def run(tmp_path, **settings: str) -> subprocess.CompletedProcess:
    """scripts/keycloak with an empty cache of its own, `settings` added to the environment."""
    env = {name: value for name, value in os.environ.items() if name not in ("REXEC_MAVEN_REPOSITORY", "KEYCLOAK_JAVA_HOME")}
    env.update(REXEC_CACHE=str(tmp_path / "cache"), **settings)
    return subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def left_in_cache(tmp_path) -> list[str]:
    cache = tmp_path / "cache" / "keycloak"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def not_keycloak():
    """A repository that answers every download with bytes that are not Keycloak's."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"PK\x03\x04 not keycloak" * 1000
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/maven2"
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_download_that_fails_is_named_and_leaves_nothing(tmp_path):
    repository = f"http://127.0.0.1:{closed_port()}/maven2"
    done = run(tmp_path, REXEC_MAVEN_REPOSITORY=repository)
    assert done.returncode == KEYCLOAK_MISSING, done.stderr
    assert f"cannot download {repository}/org/keycloak/keycloak-quarkus-dist/" in done.stderr, done.stderr
    assert done.stdout == ""
    assert left_in_cache(tmp_path) == [".lock"]


def test_a_download_that_is_not_the_pinned_distribution_is_refused(tmp_path, not_keycloak):
    done = run(tmp_path, REXEC_MAVEN_REPOSITORY=not_keycloak)
    assert done.returncode == KEYCLOAK_MISSING, done.stderr
    assert "does not have the pinned SHA-512: refused" in done.stderr, done.stderr
    assert done.stdout == ""
    assert left_in_cache(tmp_path) == [".lock"]


def test_a_java_too_old_for_keycloak_is_named(tmp_path):
    old = tmp_path / "java-17"
    (old / "bin").mkdir(parents=True)
    (old / "bin" / "java").write_text('#!/bin/sh\necho \'openjdk version "17.0.15"\' >&2\n')
    (old / "bin" / "java").chmod(0o755)
    done = run(tmp_path, KEYCLOAK_JAVA_HOME=str(old))
    assert done.returncode == KEYCLOAK_MISSING
    assert done.stderr == f"scripts/keycloak: KEYCLOAK_JAVA_HOME ({old}) is not a Java 21 or later, which Keycloak needs\n"
    assert done.stdout == ""
    assert left_in_cache(tmp_path) == []
