#!/usr/bin/env python3
"""Helm's own engine on the command line, for the tests and for people: helm-python-sdk binds
Helm v4's Go SDK, so this lints, validates values against values.schema.json and renders a chart
offline exactly as `helm lint` / `helm template` do, with no helm binary.

Usage (run with the venv's python, or let this script find it; hack/provision-helm.sh makes it):
  hack/helm.py lint CHART [-f VALUES] [--namespace NS] [--kube-version V] [--strict]
      Prints the report as JSON ({"messages": [{"severity", "path", "error"}], "errors": [...]});
      exits 1 when Helm reports an error (with --strict: a warning too).
  hack/helm.py validate CHART [-f VALUES]
      Checks VALUES merged over the chart's defaults against values.schema.json; exits 1 if not.
  hack/helm.py template CHART [-f VALUES] [--name NAME] [--namespace NS] [--include-crds]
      Prints the rendered manifests as one YAML stream, `# Source:` before each template, as
      `helm template` does (NOTES.txt and templates that render to nothing are left out).
  hack/helm.py template-batch CHART
      Reads a JSON list of {"values": {...}, "name": ..., "namespace": ...} on stdin and prints a
      JSON list with one {"manifest": "<YAML stream>"} or {"error": "<message>"} per entry: many
      renders for one start of the Go runtime.

VALUES is a YAML (or JSON) file, `-` for stdin, parsed by Helm's own values parser. Errors go to
stderr with exit status 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

VENV_PYTHON_ENV = "BKOPS_HELM_REEXEC"


def venv_python() -> str:
    cache = os.environ.get("BKOPS_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "bkops"
    )
    return os.path.join(cache, "helm-venv", "bin", "python")


try:
    import helm_python as helm
except ImportError:
    python = venv_python()
    if os.environ.get(VENV_PYTHON_ENV) or not os.access(python, os.X_OK):
        sys.exit(
            f"helm.py: helm_python is not importable by {sys.executable} and {python} is "
            "missing: run hack/provision-helm.sh"
        )
    os.environ[VENV_PYTHON_ENV] = "1"
    os.execv(python, [python, *sys.argv])


def load_values(source: str | None) -> dict | None:
    if source is None:
        return None
    text = sys.stdin.read() if source == "-" else open(source, encoding="utf-8").read()
    return helm.values_from_yaml(text)


def manifest_stream(chart: helm.Chart, rendered: dict[str, str], include_crds: bool) -> str:
    out = []
    if include_crds:
        for crd in chart.crds:
            out.append(f"---\n# Source: {crd['filename']}\n{crd['data'].strip()}\n")
    for path in sorted(rendered):
        text = rendered[path].strip()
        if path.endswith("NOTES.txt") or not text:
            continue
        out.append(f"---\n# Source: {path}\n{text}\n")
    return "".join(out)


def cmd_lint(args: argparse.Namespace) -> int:
    report = helm.lint(
        args.chart,
        load_values(args.values),
        strict=args.strict,
        namespace=args.namespace,
        kube_version=args.kube_version,
    )
    print(json.dumps(report, indent=2))
    worst = max((m.get("severity", 0) for m in report.get("messages", [])), default=0)
    failed = report.get("errors") or worst >= 3 or (args.strict and worst >= 2)
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    with helm.Chart.load(args.chart) as chart:
        chart.validate_schema(load_values(args.values))
    return 0


def cmd_template(args: argparse.Namespace) -> int:
    with helm.Chart.load(args.chart) as chart:
        rendered = chart.render(
            load_values(args.values), name=args.name, namespace=args.namespace, is_install=True
        )
        sys.stdout.write(manifest_stream(chart, rendered, args.include_crds))
    return 0


def cmd_template_batch(args: argparse.Namespace) -> int:
    requests = json.load(sys.stdin)
    results = []
    with helm.Chart.load(args.chart) as chart:
        for request in requests:
            try:
                rendered = chart.render(
                    request.get("values"),
                    name=request.get("name", "bkops"),
                    namespace=request.get("namespace", "default"),
                    is_install=True,
                )
                results.append({"manifest": manifest_stream(chart, rendered, False)})
            except helm.HelmError as e:
                results.append({"error": str(e)})
    json.dump(results, sys.stdout)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="helm.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func, values: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name)
        p.add_argument("chart")
        if values:
            p.add_argument("-f", "--values", help="values file (YAML or JSON); - for stdin")
        p.set_defaults(func=func)
        return p

    lint = command("lint", cmd_lint)
    lint.add_argument("--namespace")
    lint.add_argument("--kube-version", help="e.g. v1.20.2")
    lint.add_argument("--strict", action="store_true", help="warnings fail too")
    command("validate", cmd_validate)
    template = command("template", cmd_template)
    template.add_argument("--name", default="bkops", help="release name")
    template.add_argument("--namespace", default="default", help="release namespace")
    template.add_argument("--include-crds", action="store_true")
    command("template-batch", cmd_template_batch, values=False)

    args = parser.parse_args()
    try:
        return args.func(args)
    except (helm.HelmError, OSError) as e:
        print(f"helm.py {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
