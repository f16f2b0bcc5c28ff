"""The documentation pages' assets (shared/assets/docs) are, byte for byte, the files of the npm
packages that its sources.json pins: each package is fetched from the registry with `npm pack`,
its tarball must have the pinned integrity (SHA-512, computed here), and every asset must equal
its file in the tarball. Every file of the folder is either pinned there or the project's own.

To move to another release, change the version and the integrity (`npm view <name>@<version>
dist.integrity`) and run this with --update, which writes the files from the checked tarballs.
"""

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "shared" / "assets" / "docs"
OURS = {"sources.json", "swagger-init.js"}


def fetch(package, folder):
    """The package's tarball from the registry, checked against its pinned integrity."""
    spec = f"{package['name']}@{package['version']}"
    subprocess.run(
        ["npm", "pack", spec, "--pack-destination", folder, "--silent", "--no-audit", "--no-fund"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tarball = Path(folder) / f"{package['name']}-{package['version']}.tgz"
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if integrity != package["integrity"]:
        sys.exit(f"{spec}: the registry's tarball has integrity {integrity}, not the pinned {package['integrity']}")
    return tarball


def main(update):
    sources = json.loads((ASSETS / "sources.json").read_text())
    problems, pinned = [], set()
    with tempfile.TemporaryDirectory() as folder:
        for package in sources["packages"]:
            with tarfile.open(fetch(package, folder)) as archive:
                for asset, member in package["files"].items():
                    pinned.add(asset)
                    expected = archive.extractfile(member).read()
                    if update:
                        (ASSETS / asset).write_bytes(expected)
                    elif not (ASSETS / asset).is_file():
                        problems.append(f"{asset}: missing (run with --update)")
                    elif (ASSETS / asset).read_bytes() != expected:
                        problems.append(f"{asset}: differs from {member} of {package['name']}@{package['version']}")
    for path in sorted(ASSETS.iterdir()):
        if path.name not in pinned | OURS:
            problems.append(f"{path.name}: neither pinned in sources.json nor the project's own")
    for problem in problems:
        print(f"shared/assets/docs/{problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main("--update" in sys.argv[1:]))
