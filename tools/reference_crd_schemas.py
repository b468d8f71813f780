"""Give the reference implementation's networking and Gateway API CRDs the schemas
of the APIs they serve.

The reference reads Istio's ``networking.istio.io`` kinds (VirtualService,
DestinationRule, Gateway) and the Gateway API's GatewayClass, Gateway and
HTTPRoute.  Their schemas must be the APIs' own: a field the API has must never be
refused, one it lacks must be, and enums, bounds and CEL rules must hold.  So they
are taken from the APIs' published CRDs, not written by hand:

- Istio's ``manifests/charts/base/files/crd-all.gen.yaml`` (generated from the
  ``istio.io/api`` protobufs);
- the Gateway API's CRD bundle (kubernetes-sigs/gateway-api ``config/crd``; the
  experimental channel is a superset of the standard one, so it refuses nothing the
  standard accepts).

This tool replaces the ``openAPIV3Schema`` of each served version of those kinds in
``reference-impl/ambient_ref/manifests/crds.yaml`` with the upstream one of the same
version (or, for a version upstream no longer serves, of the storage version: the
same Go types), drops the descriptions (upstream's prose stays upstream; the
header of the file names the sources) and keeps everything else of ours: names,
printer columns, served versions, labels.  Documents it does not own (the security
kinds, written in the file itself) are kept byte for byte.

A maintainer's tool, never run by the tests or CI::

    python tools/reference_crd_schemas.py --istio crd-all.gen.yaml \\
        --gateway-api experimental-install.yaml
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO / "reference-impl" / "ambient_ref" / "manifests" / "crds.yaml"
OWNED = {
    "virtualservices.networking.istio.io": "istio",
    "destinationrules.networking.istio.io": "istio",
    "gateways.networking.istio.io": "istio",
    "gatewayclasses.gateway.networking.k8s.io": "gateway-api",
    "gateways.gateway.networking.k8s.io": "gateway-api",
    "httproutes.gateway.networking.k8s.io": "gateway-api",
}
SEPARATOR = "\n---\n"
# Served versions upstream no longer serves, and what they keep of their own API.
# Gateway v1alpha2 is the 2022 ambient preview's: its waypoints, Gateways of class
# istio-mesh, were applied without listeners (the 2022 getting-started guide), so
# there listeners stay optional.
LEGACY_OPTIONAL = {("gateways.gateway.networking.k8s.io", "v1alpha2"): ("spec", "listeners")}


def without_descriptions(node: Any) -> Any:
    """The schema with every ``description`` removed (a property *named*
    description, under ``properties``, stays)."""
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "description" and not isinstance(value, dict):
            continue
        if key == "properties":
            out[key] = {name: without_descriptions(v) for name, v in value.items()}
        else:
            out[key] = without_descriptions(value)
    return out


def upstream_schemas(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """CRD name -> version name -> openAPIV3Schema, and "<storage>" -> the storage one."""
    found: dict[str, dict[str, Any]] = {}
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            versions: dict[str, Any] = {}
            for v in doc["spec"]["versions"]:
                schema = without_descriptions(v["schema"]["openAPIV3Schema"])
                versions[v["name"]] = schema
                if v.get("storage"):
                    versions["<storage>"] = schema
            found[doc["metadata"]["name"]] = versions
    return found


def optional(schema: dict[str, Any], parent: str, field: str) -> dict[str, Any]:
    """A copy of ``schema`` where ``parent``'s ``field`` may be absent or empty."""
    out = copy.deepcopy(schema)
    node = out["properties"][parent]
    node["required"] = [r for r in node.get("required", []) if r != field]
    if not node["required"]:
        del node["required"]
    node["properties"][field].pop("minItems", None)
    return out


def rewrite(text: str, upstream: dict[str, dict[str, Any]]) -> str:
    parts = text.split(SEPARATOR)
    out = []
    for part in parts:
        doc = yaml.safe_load(part)
        name = (doc or {}).get("metadata", {}).get("name") if isinstance(doc, dict) else None
        if name not in OWNED:
            out.append(part)
            continue
        if name not in upstream:
            sys.exit(f"{name}: not in the upstream files given ({OWNED[name]}'s CRDs)")
        head = "".join(line + "\n" for line in part.splitlines() if line.startswith("#"))
        written: list[Any] = []
        for v in doc["spec"]["versions"]:
            schema = upstream[name].get(v["name"]) or upstream[name]["<storage>"]
            if (name, v["name"]) in LEGACY_OPTIONAL:
                schema = optional(schema, *LEGACY_OPTIONAL[name, v["name"]])
            # a schema equal to an earlier version's is that object: YAML writes an
            # alias to it instead of another copy
            schema = next((w for w in written if w == schema), schema)
            written.append(schema)
            v["schema"] = {"openAPIV3Schema": schema}
        body = yaml.safe_dump(doc, sort_keys=False, width=100, default_flow_style=False)
        out.append(head + body.rstrip("\n"))
    return SEPARATOR.join(out) + ("" if out[-1].endswith("\n") else "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--istio", type=Path, required=True,
                        help="Istio's crd-all.gen.yaml")
    parser.add_argument("--gateway-api", type=Path, required=True,
                        help="the Gateway API's CRD bundle (experimental channel)")
    parser.add_argument("--crds", type=Path, default=CRDS, help="the file to rewrite")
    opts = parser.parse_args(argv)
    upstream = upstream_schemas([opts.istio, opts.gateway_api])
    opts.crds.write_text(rewrite(opts.crds.read_text(), upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
