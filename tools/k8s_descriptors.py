"""Rebuild the local API server's protobuf data from Kubernetes' own sources.

The local API server reads kubectl's protobuf request bodies
(``clusters/local/apiserver/protobuf.py``) with two files this tool writes:

- ``kubernetes-api.binpb``: k8s.io/api's and k8s.io/apimachinery's
  ``generated.proto`` of one release, compiled with all their imports into one
  ``FileDescriptorSet``;
- ``kubernetes-api-json-tags.json``: what the Go struct tags of the same release's
  ``types.go`` say about JSON that the messages do not: per message, ``omitempty``
  lists the fields whose Go type is a plain (non-pointer) number or boolean tagged
  ``omitempty`` (Go's generated marshalling writes them even when zero, its JSON leaves
  them out; a pointer's zero, ``replicas: 0``, is kept), and ``inline`` the embedded
  structs (``json:",inline"``: ``Volume``'s ``VolumeSource``, ``Probe``'s
  ``ProbeHandler``) whose fields JSON lifts into the enclosing object.

A maintainer's tool, never run by the tests or CI:

    pip install grpcio-tools==1.85.1
    python tools/k8s_descriptors.py v0.37.1     # the k8s.io/api of the pinned kubectl

It needs Go (``go mod download`` fetches the two modules through the module proxy)
and writes the descriptor set in place; update ``protobuf.API_VERSION`` to match.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "clusters" / "local" / "apiserver"
OUT = DATA / "kubernetes-api.binpb"
JSON_TAGS = DATA / "kubernetes-api-json-tags.json"
# The group versions the local API server serves (clusters/local/apiserver/resources.py).
GROUP_VERSIONS = (
    "core/v1", "apps/v1", "batch/v1", "rbac/v1", "authorization/v1", "authentication/v1",
    "policy/v1", "networking/v1", "discovery/v1", "events/v1", "coordination/v1",
    "autoscaling/v2", "admissionregistration/v1", "scheduling/v1",
)


def module_dir(module: str, version: str) -> Path:
    """Where ``go mod download`` put ``module@version``."""
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(["go", "mod", "init", "k8s-descriptors"], cwd=work, check=True,
                       capture_output=True)
        done = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                              cwd=work, check=True, capture_output=True, text=True)
    return Path(json.loads(done.stdout)["Dir"])


_STRUCT = re.compile(r"^type (\w+) struct \{")
# a field (name, type, tags) or an embedded struct (type, tags, no name)
_FIELD = re.compile(r"^\s+(\w+\s+)?(\*?)[\w.\[\]]+\s+`(.*)`")
_TAG = re.compile(r'(\w+):"([^"]*)"')


def json_tags(go_dir: Path, proto_package: str) -> dict[str, dict[str, list[str]]]:
    """``omitempty`` and ``inline`` (see the module's docstring): message -> proto field
    names, for every struct of the Go package in ``go_dir``."""
    out: dict[str, dict[str, list[str]]] = {"omitempty": {}, "inline": {}}
    for source in sorted(go_dir.glob("*.go")):
        if source.name.endswith("_test.go") or source.name.startswith("zz_generated"):
            continue
        struct = None
        for line in source.read_text().splitlines():
            if m := _STRUCT.match(line):
                struct = m.group(1)
            elif line.startswith("}"):
                struct = None
            elif struct and (m := _FIELD.match(line)):
                embedded, pointer = m.group(1) is None, m.group(2)
                tags = dict(_TAG.findall(m.group(3)))
                proto = tags.get("protobuf", "")
                json_opts = tags.get("json", "").split(",")
                if "name=" not in proto:  # no message field (protobuf:"-")
                    continue
                name = next(p[5:] for p in proto.split(",") if p.startswith("name="))
                message = f"{proto_package}.{struct}"
                if embedded and json_opts[0] == "":  # json:"" or json:",inline"
                    out["inline"].setdefault(message, []).append(name)
                elif (not pointer and "omitempty" in json_opts[1:]
                      and proto.startswith(("varint,", "fixed"))):
                    out["omitempty"].setdefault(message, []).append(name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", help="k8s.io/api and k8s.io/apimachinery version, e.g. "
                        "v0.37.1")
    args = parser.parse_args()
    try:
        from grpc_tools import protoc  # noqa: F401  (checked before the download)
    except ImportError:
        print("error: grpc_tools is missing: pip install grpcio-tools==1.85.1", file=sys.stderr)
        return 2
    if shutil.which("go") is None:
        print("error: go is not on PATH; the tool fetches the Kubernetes modules with it",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tree:
        root = Path(tree) / "k8s.io"
        for name in ("api", "apimachinery"):
            shutil.copytree(module_dir(f"k8s.io/{name}", args.version), root / name)
        files = [f"k8s.io/api/{gv}/generated.proto" for gv in GROUP_VERSIONS]
        tags = json_tags(root / "apimachinery/pkg/apis/meta/v1",
                         "k8s.io.apimachinery.pkg.apis.meta.v1")
        for gv in GROUP_VERSIONS:
            for key, messages in json_tags(root / "api" / gv,
                                           "k8s.io.api." + gv.replace("/", ".")).items():
                tags[key].update(messages)
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tree}",
                        "--include_imports", f"--descriptor_set_out={OUT}", *files],
                       check=True)
    JSON_TAGS.write_text(json.dumps({k: dict(sorted(v.items())) for k, v in tags.items()},
                                    indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) and {JSON_TAGS.name} from k8s.io/api "
          f"{args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
