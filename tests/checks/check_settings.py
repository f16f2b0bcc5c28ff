"""Every environment variable the code reads is in the configuration table
(docs/configuration.md), and every one that is a deployment setting is passed to the functions by
template.yaml."""

import re
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
# Settings of local runs only: on Lambda the cluster is found through EKS_CLUSTER_NAME, and the
# client secret is read from Secrets Manager (AUTH_CLIENT_SECRET_ID), never put in the template.
LOCAL_ONLY = {"KUBECONFIG", "KUBE_CONTEXT", "KUBE_AS_FUNCTION", "KUBE_ALLOW_INSECURE_TLS", "KUBERNETES_SERVICE_HOST",
              "AUTH_CLIENT_SECRET", "AWS_ENDPOINT_URL"}
# Set by the Lambda runtime itself: the role's credentials, the region, the function's name and
# its logging controls (a function's LoggingConfig).
LAMBDA_RUNTIME = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
                  "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_FORMAT"}
READ = re.compile(r'vars\s*\.\s*(?:get|required|parse_or|bool_or|seconds_or|url|list)\(\s*"([A-Z][A-Z0-9_]+)"')


def main():
    read = set()
    for source in list((ROOT / "shared" / "src").rglob("*.rs")) + list((ROOT / "functions").rglob("*.rs")):
        text = source.read_text()
        text = text.split("#[cfg(test)]")[0]
        read.update(READ.findall(text))
    table = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    missing = sorted(read - documented)
    if missing:
        sys.exit("settings read by the code but missing from the configuration table (docs/configuration.md): " + ", ".join(missing))
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    passed = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        passed.update(resource.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    undeployable = sorted(read - passed - LOCAL_ONLY - LAMBDA_RUNTIME)
    if undeployable:
        sys.exit("settings read by the code that template.yaml does not pass: " + ", ".join(undeployable))
    print(f"settings: docs/configuration.md documents all {len(read)} variables the code reads, and template.yaml passes them")


if __name__ == "__main__":
    main()
