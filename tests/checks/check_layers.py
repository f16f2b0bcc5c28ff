"""The shared library's layers hold: each folder of shared/src uses only the layers below it
(`http` above `server` above `identity` and `cluster`, which use neither), and the
documentation functions depend on the shared library alone, not on the handler crates."""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "shared" / "src"
# What each layer may use of the others.
ALLOWED = {
    "http": {"server", "identity", "cluster"},
    "server": {"identity", "cluster"},
    "identity": set(),
    "cluster": set(),
}
USE = re.compile(r"\bcrate::(http|server|identity|cluster)\b")
DOCS_CRATES = ("serve-ndp-docs", "serve-rexec-docs")


def main():
    problems = []
    for layer, allowed in ALLOWED.items():
        for source in sorted((SRC / layer).rglob("*.rs")):
            code = source.read_text().split("#[cfg(test)]")[0]
            for used in sorted(set(USE.findall(code)) - allowed - {layer}):
                problems.append(f"{source.relative_to(ROOT)} ({layer}) uses crate::{used}")
    handlers = {p.name for p in (ROOT / "functions").iterdir()} - set(DOCS_CRATES)
    for crate in DOCS_CRATES:
        manifest = tomllib.loads((ROOT / "functions" / crate / "Cargo.toml").read_text())
        for dependency in sorted(set(manifest.get("dependencies", {})) & handlers):
            problems.append(f"{crate} depends on the handler crate {dependency}")
    if problems:
        sys.exit("\n".join(problems))
    print(f"layers: shared/src keeps {len(ALLOWED)} layers apart; the docs functions depend on no handler crate")


if __name__ == "__main__":
    main()
