"""Every build of the workspace compiles a dependency with the same features: `cargo test
--workspace`, the stand-ins' and the tests' binaries, and each function alone (as `cargo lambda watch` and
`sam build` build them). Cargo unifies features over the packages a command selects, so a
dependency that one selection builds with features another lacks is compiled twice, along with
everything above it; workspace-hack/Cargo.toml turns those features on for every build. This
check names any dependency the hack misses, and any function that would be built with
rexec-shared's `local` feature: the Lambda builds reach EKS only, and leave kube's
kubeconfig loader and aws-config's credential chain out."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def features(*selection: str) -> set[str]:
    """`<package> <version> [<features>]` of each dependency the selection builds."""
    tree = subprocess.run(
        ["cargo", "tree", *selection, "--format", "{p} [{f}]", "--prefix", "none", "--locked"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return {line.removesuffix(" (*)").strip() for line in tree.splitlines() if line.strip()}


def main():
    everything = features("--workspace", "--edges", "normal,build,dev")
    # The stand-ins are built with the tests' binaries (make dev, make test, the benches).
    selections = [["-p", "rexec-stand-ins", "-p", "rexec-tests"]] + [["-p", f.name] for f in sorted((ROOT / "functions").iterdir())]
    problems = []
    for selection in selections:
        for line in sorted(features(*selection, "--edges", "normal,build") - everything):
            if "(" + str(ROOT) in line:
                continue  # a workspace member: built per selection anyway
            problems.append(f"{selection[1]} builds {line}; the tests build it with other features")
    for function in sorted((ROOT / "functions").iterdir()):
        tree = subprocess.run(
            ["cargo", "tree", "-p", function.name, "--edges", "normal,features", "--invert", "rexec-shared",
             "--prefix", "none", "--locked"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
        if 'rexec-shared feature "local"' in tree:
            problems.append(f"{function.name} turns on rexec-shared's local feature, which Lambda builds leave out")
    for problem in problems:
        print(problem)
    if problems:
        print("add the tests' features of these to workspace-hack/Cargo.toml")
        sys.exit(1)
    print(f"one feature set per dependency across the tests, the stand-ins and {len(selections) - 1} functions")


if __name__ == "__main__":
    main()
