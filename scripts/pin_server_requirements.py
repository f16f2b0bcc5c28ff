#!/usr/bin/env python3
"""Writes shared/src/server/server-requirements.txt, the rexec-server's own requirements that
every build installs: each `name==version` with the SHA-256 of every file PyPI holds for that
version (its simple index, PEP 691), so that the installer accepts those files and no other.

    scripts/pin_server_requirements.py                      # the file's versions, hashes fetched again
    scripts/pin_server_requirements.py dill==0.4.1 ...      # those versions instead (others kept)
"""

import json
import re
import sys
import urllib.request
from pathlib import Path

FILE = Path(__file__).resolve().parents[1] / "shared" / "src" / "server" / "server-requirements.txt"
INDEX = "https://pypi.org/simple"
HEADER = """\
# The rexec-server's own requirements, installed with every caller's: scidx-rexec and what it pins,
# each with the SHA-256 of every file PyPI holds for its version. uv verifies them, and the
# caller's unhashed lines stay as they are; pip, which would require a hash on every line once
# one has some, is given these lines without their hashes. Written by
# scripts/pin_server_requirements.py; the default of REXEC_SERVER_REQUIREMENTS.
"""


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def hashes(name: str, version: str) -> list[str]:
    request = urllib.request.Request(
        f"{INDEX}/{normalised(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    # A file of the version: <name>-<version>-<tags>.whl or <name>-<version>.<archive>.
    stem = "[-_.]".join(re.escape(part) for part in normalised(name).split("-"))
    prefix = re.compile(rf"^{stem}-{re.escape(version)}(-|\.tar\.gz$|\.zip$)", re.I)
    found = sorted(f["hashes"]["sha256"] for f in files if prefix.match(f["filename"]) and not f.get("yanked"))
    if not found:
        sys.exit(f"{name}=={version}: PyPI holds no file of that version")
    return found


def main(args: list[str]) -> None:
    pins = {}
    if FILE.exists():
        for line in FILE.read_text().splitlines():
            if line and not line.startswith("#"):
                name, version = line.split()[0].split("==")
                pins[normalised(name)] = (name, version)
    for arg in args:
        name, version = arg.split("==")
        pins[normalised(name)] = (name, version)
    lines = [
        " ".join([f"{name}=={version}", *(f"--hash=sha256:{h}" for h in hashes(name, version))])
        for name, version in pins.values()
    ]
    FILE.write_text(HEADER + "\n".join(lines) + "\n")
    print(f"{FILE.name}: {len(lines)} requirements pinned with their hashes")


if __name__ == "__main__":
    main(sys.argv[1:])
