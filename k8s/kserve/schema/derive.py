"""Derive inferenceservice-v1beta1.schema.json from KServe's InferenceService CRD, cut to what we use.

KServe's full CRD (config/crd/full/serving.kserve.io_inferenceservices.yaml) is ~2 MB, mostly pod-spec
schemas we never touch. This keeps its openAPIV3Schema verbatim along every path our manifests use, and
everywhere else keeps only the field names and their types, so an unknown or misspelt field is still an
error and a wrong type still fails. `additionalProperties: false` is added to every object with listed
properties: the strict field validation `kubectl apply` asks the API server for (unknown fields are
refused, not silently pruned).

    curl -LO https://raw.githubusercontent.com/kserve/kserve/v0.20.0/config/crd/full/serving.kserve.io_inferenceservices.yaml
    .venv/bin/python k8s/kserve/schema/derive.py serving.kserve.io_inferenceservices.yaml v0.20.0
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
VARIANTS = ("base", "knative", "knative-grpc")
OUTPUT = HERE / "inferenceservice-v1beta1.schema.json"
KEPT_IN_STUBS = ("type", "enum", "x-kubernetes-int-or-string", "anyOf", "x-kubernetes-preserve-unknown-fields")


def stub(node: dict) -> dict:
    """A field we do not use: its type (and enum) only, so it stays allowed and type-checked."""
    return {key: node[key] for key in KEPT_IN_STUBS if key in node}


def strict(node: dict) -> dict:
    open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and not open_ended:
        node["additionalProperties"] = False
    return node


def prune(node: dict, used: list) -> dict:
    """`node` with full detail where some value in `used` reaches, stubs elsewhere."""
    node = {key: value for key, value in node.items() if key != "description"}
    objects = [value for value in used if isinstance(value, dict)]
    if "properties" in node:
        kept = {}
        for name, child in node["properties"].items():
            values = [value[name] for value in objects if name in value]
            kept[name] = prune(child, values) if values else stub(child)
        node["properties"] = kept
    if isinstance(node.get("additionalProperties"), dict):
        values = [item for value in objects for item in value.values()]
        node["additionalProperties"] = prune(node["additionalProperties"], values)
    if "items" in node:
        values = [item for value in used if isinstance(value, list) for item in value]
        node["items"] = prune(node["items"], values)
    return strict(node)


def rendered_inference_services() -> list[dict]:
    services = []
    for variant in VARIANTS:
        out = subprocess.run(
            [str(Path(sys.executable).parent / "kubectl"), "kustomize", str(HERE.parent / variant)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        services += [doc for doc in yaml.safe_load_all(out) if doc and doc["kind"] == "InferenceService"]
    return services


def main(crd_path: str, source: str) -> None:
    crd = yaml.safe_load(Path(crd_path).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = prune(version["schema"]["openAPIV3Schema"], rendered_inference_services())
    schema["properties"].pop("status", None)  # written by the controller, never by us
    document = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": f"Derived by derive.py from KServe {source} {Path(crd_path).name} (v1beta1 openAPIV3Schema).",
        **schema,
        "required": ["apiVersion", "kind", "metadata", "spec"],
    }
    document["properties"]["apiVersion"] = {"const": "serving.kserve.io/v1beta1"}
    document["properties"]["kind"] = {"const": "InferenceService"}
    OUTPUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
