"""No Lambda function turns on rexec-shared's `local` feature. With it, a build reads a
kubeconfig with kube's own loader and takes AWS credentials from aws-config's whole chain
(`make dev`, the tests); the Lambda builds reach EKS only, with the credentials the Lambda
runtime sets, and leave that code out. (One feature set per dependency across the builds is
cargo-hakari's check: see workspace-hack/Cargo.toml.)"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    functions = sorted(f.name for f in (ROOT / "functions").iterdir())
    problems = []
    for function in functions:
        tree = subprocess.run(
            ["cargo", "tree", "-p", function, "--edges", "normal,features", "--invert", "rexec-shared",
             "--prefix", "none", "--locked"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
        if 'rexec-shared feature "local"' in tree:
            problems.append(f"{function} turns on rexec-shared's local feature, which Lambda builds leave out")
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"none of the {len(functions)} functions turns on rexec-shared's local feature")


if __name__ == "__main__":
    main()
