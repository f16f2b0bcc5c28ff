"""SECURITY.md keeps its promises checkable: every promise of "What is defended, and how" names
the tests that show it, and every test it names exists (a Rust `fn` or a Python `def` of that
name in the code), so that a renamed or removed test fails `make test` instead of leaving a
promise without proof."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A test's name: `test_...`, or a sentence of at least four words joined by underscores,
# optionally after a module path (`marker::tests::name`).
TEST = re.compile(r"`(?:[a-z_]+::)*((?:test_[a-z0-9_]+)|(?:[a-z0-9]+(?:_[a-z0-9]+){3,}))`")


def defined() -> set[str]:
    names = set()
    for folder in ("shared", "stand-ins", "functions", "tests"):
        for source in (ROOT / folder).rglob("*"):
            if source.suffix not in (".rs", ".py") or "node_modules" in source.parts:
                continue
            names.update(re.findall(r"\b(?:fn|def)\s+([a-z0-9_]+)", source.read_text()))
    return names


def main():
    text = (ROOT / "SECURITY.md").read_text()
    defended = text.split("## What is defended, and how", 1)[1].split("\n## ", 1)[0]
    promises = [p for p in re.split(r"\n(?=\*\*)", defended) if p.startswith("**")]
    unshown = [p.split("**")[1] for p in promises if not TEST.search(p)]
    if unshown:
        sys.exit("promises of SECURITY.md that name no test: " + "; ".join(unshown))
    named = set(TEST.findall(text))
    missing = sorted(named - defined())
    if missing:
        sys.exit("tests SECURITY.md names that do not exist: " + ", ".join(missing))
    print(f"security: {len(promises)} promises, each naming its tests; all {len(named)} tests named exist")


if __name__ == "__main__":
    main()
