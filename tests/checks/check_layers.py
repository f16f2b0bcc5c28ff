"""The shared library's layers hold: each folder of shared/src uses only the layers below it
(`http` above `server` above `identity` and `cluster`, which use neither), and the
documentation functions depend on the shared library alone, not on the handler crates. No two
modules of a crate use each other (a module and its own submodules aside)."""

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
PATH = re.compile(r"\b(crate|super)((?:::\w+)+)")
CRATES = ["shared/src", "stand-ins/src", "tests/src"]


def uses(src: Path) -> dict[str, set[str]]:
    """Each module of the crate at `src` (`server::spawner`), and the modules its code (not its
    tests or comments) names through `crate::` or `super::`."""
    found = {}
    for source in src.rglob("*.rs"):
        parts = list(source.relative_to(src).with_suffix("").parts)
        if parts[-1] in ("mod", "lib", "main"):
            parts = parts[:-1]
        parent = parts[:-1]
        code = source.read_text().split("#[cfg(test)]")[0]
        code = "\n".join(line for line in code.splitlines() if not line.strip().startswith("//"))
        named = set()
        for kind, path in PATH.findall(code):
            full = path.strip(":").split("::") if kind == "crate" else parent + path.strip(":").split("::")
            named.update("::".join(full[:k]) for k in range(1, len(full) + 1))
        found["::".join(parts)] = named
    return found


def circles(src: Path) -> list[str]:
    modules = uses(src)
    related = lambda a, b: a.startswith(b + "::") or b.startswith(a + "::")  # noqa: E731
    return [f"{src.relative_to(ROOT)}: {a} and {b} use each other"
            for a in sorted(modules) for b in sorted(modules)
            if a < b and b in modules[a] and a in modules[b] and not related(a, b)]


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
    for crate in CRATES + [f"functions/{f.name}/src" for f in sorted((ROOT / "functions").iterdir())]:
        problems += circles(ROOT / crate)
    if problems:
        sys.exit("\n".join(problems))
    print(f"layers: shared/src keeps {len(ALLOWED)} layers apart; the docs functions depend on no handler crate;"
          " no two modules use each other")


if __name__ == "__main__":
    main()
