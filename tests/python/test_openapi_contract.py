"""Both APIs keep their OpenAPI documents. Each document is valid OpenAPI 3.1
(openapi-spec-validator) with unique, readable operation ids, and schemathesis, driving every
operation of the local stack with generated requests valid and invalid, finds nothing wrong with
every check but the undeclared method's: no 5xx, only documented statuses, content types,
headers and bodies, every request the document rules out refused and every one it allows
accepted (where a schema cannot state a rule, tests/python/schemathesis.toml says which),
resources gone once deleted, and authentication never ignored. JSON bodies that are not UTF-8
are left out (tests/python/schemathesis_hooks.py says why).

The run gets a stack of its own, so what it creates and removes touches no other test's callers.
Its caller is bob, an administrator: the administrators' tier is driven too.
"""

import json
import os
import re
import subprocess

import pytest
import requests

from conftest import ROOT, Api, Identity, running_stack

API_TOOLS = ROOT / ".venv" / "api" / "bin"
# Every check but the undeclared method's: API Gateway answers such a request 404, not 405.
EXCLUDED_CHECKS = "unsupported_method"
HERE = ROOT / "tests" / "python"
# Where a schema cannot state a rule, and the bodies the local stack cannot carry.
CONFIG = HERE / "schemathesis.toml"


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    log = tmp_path_factory.mktemp("contract") / "scripts-dev.log"
    # The HTTP contract alone: on the stand-in, which answers at once.
    with running_stack([str(ROOT / "scripts" / "dev"), "--ignore-changes", "--stand-in"], {}, log) as stack:
        yield Api(stack.base), Identity(stack.ready["identity"], stack.ready["token_url"])


@pytest.mark.parametrize("name", ["ndp", "rexec"])
def test_the_document_is_valid_and_the_api_keeps_it(own_stack, name, tmp_path):
    api, identity = own_stack
    base = getattr(api, name)
    document = requests.get(f"{base}/openapi.json", timeout=30).json()
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(document))

    valid = subprocess.run([API_TOOLS / "openapi-spec-validator", path], capture_output=True, text=True)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), ids
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ids), ids

    # `cargo lambda watch` builds a function at its first request: each route is called once
    # first, so that the run's time limit measures the API, not the compiler.
    for route, item in document["paths"].items():
        for method in item:
            url = base + re.sub(r"\{[^}]*\}", "warm-up", route)
            requests.request(method, url, timeout=600)

    token = identity.token("bob")
    run = subprocess.run(
        [API_TOOLS / "schemathesis", "--config-file", CONFIG, "run", path, "--url", base,
         "--header", f"Authorization: Bearer {token}", "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
         "--max-examples", "20", "--seed", "1", "--workers", "1", "--request-timeout", "30",
         "--generation-database", "none", "--no-color"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "PYTHONPATH": str(HERE)},
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    summary = run.stdout[run.stdout.rfind("SUMMARY"):]
    assert re.search(rf"Tested: {len(ids)}\b", summary), summary
    assert re.search(r"(\d+) generated, \1 passed", summary), summary
