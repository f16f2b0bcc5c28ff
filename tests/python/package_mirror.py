"""A local package index for the pods the tests run: wheels downloaded once from PyPI (kept in
.venv/mirror), served on 127.0.0.1 as a PEP 503 simple index with each wheel's metadata beside it
(PEP 658, as PyPI serves it), and the rexec-server stand-in's source archive, as an operator's
package-index proxy would serve them.

`python tests/python/package_mirror.py` downloads the wheels (what `make deps` runs)."""

import hashlib
import html
import io
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ROOT / ".venv" / "mirror"
# The server's own requirements (REXEC_SERVER_REQUIREMENTS' default, the versions it pins) and
# what the tests ask for.
SERVER_REQUIREMENTS = ROOT / "shared" / "src" / "server" / "server-requirements.txt"
PACKAGES = [
    line.split()[0] for line in SERVER_REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")
] + ["six"]
SERVER_SOURCE = Path(__file__).resolve().parent / "rexec_server"


def download() -> None:
    """Downloads the wheels for Python 3.11 on this machine, once."""
    marker = WHEELS / ".complete"
    if marker.exists() and marker.read_text() == "\n".join(PACKAGES):
        return
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--dest", str(WHEELS), *PACKAGES],
        check=True,
    )
    marker.write_text("\n".join(PACKAGES))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Mirror:
    """The index and the server source, served from `root` until `stop`."""

    def __init__(self, root: Path):
        download()
        files = root / "files"
        files.mkdir(parents=True)
        projects: dict[str, list[Path]] = {}
        for wheel in sorted(WHEELS.glob("*.whl")):
            (files / wheel.name).symlink_to(wheel)
            (files / f"{wheel.name}.metadata").write_bytes(metadata(wheel))
            projects.setdefault(normalise(wheel.name.split("-")[0]), []).append(wheel)
        sha256 = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
        for name, wheels in projects.items():
            page = root / "simple" / name
            page.mkdir(parents=True)
            links = "".join(
                f'<a href="../../files/{html.escape(w.name)}#sha256={sha256(w)}" '
                f'data-core-metadata="sha256={sha256(files / f"{w.name}.metadata")}">{html.escape(w.name)}</a>\n'
                for w in wheels
            )
            (page / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
        archive = files / "rexec-server.tar.gz"
        archive.write_bytes(source_archive())
        self.source_sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
        handler = partial(QuietHandler, directory=str(root))
        self._server = QuietServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.index = f"{self.url}/simple/"
        self.source = f"{self.url}/files/rexec-server.tar.gz"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def metadata(wheel: Path) -> bytes:
    """The wheel's METADATA file."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return archive.read(name)


def source_archive() -> bytes:
    """The rexec-server stand-in as GitHub serves a source archive: one top directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for path in sorted(SERVER_SOURCE.rglob("*.py")):
            archive.add(path, arcname=f"SciDx-rexec-server-stand-in/{path.relative_to(SERVER_SOURCE)}")
    return out.getvalue()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # An installer that closes a download it no longer needs is not an error.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    download()
