"""The alarms and the dashboard of template.yaml read only metrics the functions write, with the
dimensions they write them with (shared/src/metrics.rs and its callers), and the dashboard's
body is valid JSON."""

import json
import re
import sys
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
OURS = "RexecLambda/${AWS::StackName}"


def written():
    """{metric name: its dimension name or None} from the code."""
    source = (ROOT / "shared" / "src" / "metrics.rs").read_text().split("#[cfg(test)]")[0]
    body = source.split("fn name(self)", 1)[1].split("fn unit(self)", 1)[0]
    names = dict(re.findall(r'Self::(\w+) => "(\w+)"', body))
    metrics = {name: None for name in names.values()}
    code = "".join(p.read_text() for p in list((ROOT / "shared" / "src").rglob("*.rs")) + list((ROOT / "functions").rglob("*.rs")))
    for variant, dimension in re.findall(r'count_by\(\s*Metric::(\w+),\s*"(\w+)"', code):
        metrics[names[variant]] = dimension
    return metrics


def sub_text(value):
    """The text of a !Sub (plain or with variables)."""
    sub = value["Fn::Sub"]
    return sub[0] if isinstance(sub, list) else sub


def main():
    metrics = written()
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    problems = []
    used = []  # (where, name, dimension names)
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            stats = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
            if "MetricName" in props:
                stats.append(props)
            for stat in stats:
                namespace = stat["Namespace"]
                if isinstance(namespace, dict) and sub_text(namespace) == OURS:
                    used.append((name, stat["MetricName"], [d["Name"] for d in stat.get("Dimensions", [])]))
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            sub = props["DashboardBody"]["Fn::Sub"]
            body = sub[0]
            for variable, value in sub[1].items():
                if sub_text(value) != OURS:
                    problems.append(f"{name}: ${{{variable}}} is not the functions' namespace")
                body = body.replace("${" + variable + "}", "RexecLambda/stack")
            body = body.replace("${AWS::Region}", "us-east-1").replace("${HttpApi}", "api-id")
            try:
                widgets = json.loads(body)["widgets"]
            except json.JSONDecodeError as err:
                sys.exit(f"{name}: the dashboard body is not JSON: {err}")
            for widget in widgets:
                previous = None
                for row in widget["properties"].get("metrics", []):
                    plain = [c for c in row if isinstance(c, str)]
                    if plain and plain[0] == "..." and previous:
                        plain = previous[: len(previous) - (len(plain) - 1)] + plain[1:]
                    if plain and plain[0] == "RexecLambda/stack":
                        used.append((widget["properties"]["title"], plain[1], plain[2::2]))
                    previous = plain or previous
    for where, metric, dimensions in used:
        if metric not in metrics:
            problems.append(f"{where}: {metric} is not a metric the functions write")
        elif dimensions != ([metrics[metric]] if metrics[metric] else []):
            problems.append(f"{where}: {metric} is written with the dimensions {metrics[metric]}, not {dimensions}")
    unread = sorted(set(metrics) - {metric for _, metric, _ in used})
    if unread:
        problems.append(f"metrics written but on no alarm or dashboard: {unread}")
    if problems:
        sys.exit("\n".join(problems))
    print(f"metrics: the alarms and the dashboard read {len(used)} series of the {len(metrics)} metrics the functions write")


if __name__ == "__main__":
    main()
