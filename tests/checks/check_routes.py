"""The API Gateway routes of template.yaml and the `cargo lambda watch` router of Cargo.toml
must be the same set of (method, path, function); every function crate must be deployed; the
table of the functions in docs/architecture.md must name the same routes for each crate.

Run with the tools venv's Python (it has cfn-lint's CloudFormation YAML loader).
"""

import re
import sys
import tomllib
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]


def template_routes():
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    routes = set()
    binaries = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        binaries.add(binary)
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                props = event["Properties"]
                routes.add((props["Method"].upper(), props["Path"], binary))
    return routes, binaries


def router_routes():
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
    routes = set()
    for path, target in router.items():
        if isinstance(target, str):
            sys.exit(f"router entry {path} must name its methods, as API Gateway routes do")
        for route in target:
            routes.add((route["method"].upper(), path, route["function"]))
    crates = {Path(m).name for m in manifest["workspace"]["members"] if m.startswith("functions/")}
    return routes, crates


def readme_routes():
    """(method, path, crate) from the table of the functions (docs/architecture.md); a path without a method
    takes the method before it (`GET /api/docs`, `/api/redoc`)."""
    section = (ROOT / "docs" / "architecture.md").read_text().split("## The functions", 1)[1].split("\n## ", 1)[0]
    routes = set()
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.fullmatch(r"`[a-z-]+`", cells[0]):
            continue
        method = None
        for item in re.findall(r"`([^`]+)`", cells[1]):
            words = item.split()
            if len(words) == 2:
                method = words[0]
            routes.add((method, words[-1], cells[0].strip("`")))
    return routes


def main():
    deployed, binaries = template_routes()
    local, crates = router_routes()
    problems = []
    for route in sorted(deployed - local):
        problems.append(f"in template.yaml but not in the watch router: {route}")
    for route in sorted(local - deployed):
        problems.append(f"in the watch router but not in template.yaml: {route}")
    for crate in sorted(crates - binaries):
        problems.append(f"function crate not deployed by template.yaml: {crate}")
    for binary in sorted(binaries - crates):
        problems.append(f"template.yaml builds a binary that is no function crate: {binary}")
    documented = readme_routes()
    for route in sorted(local - documented):
        problems.append(f"served but missing from the table of the functions in docs/architecture.md: {route}")
    for route in sorted(documented - local):
        problems.append(f"in the table of the functions in docs/architecture.md but not served: {route}")
    if problems:
        sys.exit("\n".join(problems))
    print(f"routes: template.yaml and the watch router agree on {len(local)} routes of {len(crates)} functions")


if __name__ == "__main__":
    main()
