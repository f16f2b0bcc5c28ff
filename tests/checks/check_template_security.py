"""The template's security settings:
- each function that reaches the cluster has an IAM role of its own, mapped by its EKS access
  entry to the Kubernetes group that deploy/k8s/rbac.yaml binds for that function (the group
  whose grants tests/tests/rbac.rs checks against what the function uses); no other function
  has one; and locally, on the control plane of scripts/cluster, each acts as the same group;
- its rules refuse a deployment that would let every authenticated user run code without
  saying so (an empty GroupNames without EnableGroupBasedAccess=false)."""

import ast
import sys
from pathlib import Path

import yaml
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {
    "spawn-server": "rexec-lambda-spawn",
    "delete-server": "rexec-lambda-delete",
    "get-server": "rexec-lambda-read",
    "get-broker-config": "rexec-lambda-broker",
    "reap-servers": "rexec-lambda-reap",
    "list-servers": "rexec-lambda-list",
}


def holds(condition, parameters) -> bool:
    """Evaluates a rule condition (Fn::Or, Fn::And, Fn::Not, Fn::Equals, Ref) for parameters."""
    (function, args), = condition.items()
    if function == "Ref":
        return parameters[args]
    values = [holds(a, parameters) if isinstance(a, dict) else a for a in args]
    return {
        "Fn::Or": lambda: any(values),
        "Fn::And": lambda: all(values),
        "Fn::Not": lambda: not values[0],
        "Fn::Equals": lambda: values[0] == values[1],
    }[function]()


def check_group_rule(template):
    defaults = {name: p.get("Default", "") for name, p in template["Parameters"].items()}
    cases = [
        ({}, False),
        ({"EnableGroupBasedAccess": "true"}, False),
        ({"GroupNames": "/ndp_ep/ep-1"}, True),
        ({"EnableGroupBasedAccess": "false"}, True),
    ]
    for overrides, expected in cases:
        parameters = {**defaults, **overrides}
        deployable = all(
            holds(assertion["Assert"], parameters)
            for rule in template.get("Rules", {}).values()
            for assertion in rule["Assertions"]
        )
        if deployable != expected:
            sys.exit(f"the template {'accepts' if deployable else 'refuses'} {overrides or 'its defaults'}")


def local_groups() -> dict[str, str]:
    """The group each function acts as on the control plane of scripts/cluster (its FUNCTIONS)."""
    tree = ast.parse((ROOT / "scripts" / "cluster").read_text())
    table = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "FUNCTIONS" for t in node.targets))
    return {function: f"rexec-lambda-{group}" for function, group in ast.literal_eval(table).items()}


def main():
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    check_group_rule(template)
    resources = template["Resources"]
    entries = {
        entry["Properties"]["PrincipalArn"]["Fn::GetAtt"][0]: entry["Properties"]["KubernetesGroups"]
        for entry in resources.values()
        if entry["Type"] == "AWS::EKS::AccessEntry"
    }
    bound = {
        subject["name"]
        for doc in yaml.safe_load_all((ROOT / "deploy/k8s/rbac.yaml").read_text())
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding")
        for subject in doc["subjects"]
    }
    roles_seen = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        role = resource["Properties"].get("Role", {}).get("Fn::GetAtt", [None])[0]
        if binary not in GROUPS:
            if role in entries:
                sys.exit(f"{binary} does not reach the cluster but has the cluster role {role}")
            continue
        if role is None or role in roles_seen:
            sys.exit(f"{binary} needs an IAM role of its own (shares {roles_seen.get(role)})")
        roles_seen[role] = binary
        if entries.get(role) != [GROUPS[binary]]:
            sys.exit(f"{binary}: the access entry of {role} maps to {entries.get(role)}, not [{GROUPS[binary]}]")
        if GROUPS[binary] not in bound:
            sys.exit(f"{binary}: deploy/k8s/rbac.yaml binds no role to {GROUPS[binary]}")
    if set(roles_seen.values()) != set(GROUPS):
        sys.exit(f"functions without their cluster role: {sorted(set(GROUPS) - set(roles_seen.values()))}")
    local = local_groups()
    if local != GROUPS:
        sys.exit(f"scripts/cluster gives the functions the groups {local}, not those of the template {GROUPS}")
    print(f"template: {len(roles_seen)} functions with their own IAM role and Kubernetes group; "
          "admitting every user is an explicit choice")


if __name__ == "__main__":
    main()
