"""Istio built from source, run as the images of the local cluster.

The local cluster pulls nothing: real istiod, istio-cni and ztunnel run from
binaries of this machine mapped to their image names (``executables.py``).  A
folder holding a build (``pilot-discovery``, ``istioctl``, ``istio-cni``,
``install-cni``, ``ztunnel``; README, "Real Istio on the local cluster") is named
by ``AMBIENT_HARNESS_ISTIO_BIN``; this module checks it and writes the mapping,
with each image's files where the upstream image has them (istio/istio
``pilot/docker/Dockerfile.pilot``, ``cni/deployments/kubernetes/Dockerfile.install-cni``,
``pilot/docker/Dockerfile.ztunnel``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_VAR = "AMBIENT_HARNESS_ISTIO_BIN"
BINARIES = ("pilot-discovery", "istioctl", "istio-cni", "install-cni", "ztunnel")
# The images istioctl's ambient profile renders, by name: any tag, any hub with
# "istio" in it (docker.io/istio, gcr.io/istio-testing), but not another mesh's
# image of the same name (example.com/mesh/pilot), which a perf run may measure on
# the same cluster.
PILOT, INSTALL_CNI, ZTUNNEL = IMAGES = ("*istio*/pilot", "*istio*/install-cni", "*istio*/ztunnel")


class IstioBuildMissing(Exception):
    """No usable build: the message says what is missing and how to provide it."""


def find(environ: Mapping[str, str] = os.environ) -> Path:
    """The build folder ``AMBIENT_HARNESS_ISTIO_BIN`` names, with every binary."""
    value = environ.get(ENV_VAR)
    if not value:
        raise IstioBuildMissing(
            f"{ENV_VAR} is not set: set it to a folder holding Istio binaries built from "
            f"source ({', '.join(BINARIES)}; README: Real Istio on the local cluster)")
    folder = Path(value)
    missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
    if missing:
        raise IstioBuildMissing(
            f"{ENV_VAR}={value} lacks executable {', '.join(missing)} (it needs "
            f"{', '.join(BINARIES)}; README: Real Istio on the local cluster)")
    return folder


def image_mapping(folder: Path) -> list[dict[str, Any]]:
    """The image mapping (``executables.py`` file form) of a build folder."""
    return [
        {"image": INSTALL_CNI,
         "files": {"/usr/local/bin/install-cni": str(folder / "install-cni"),
                   "/opt/cni/bin/istio-cni": str(folder / "istio-cni")},
         "cmd": ["/usr/local/bin/install-cni"], "workingDir": "/opt/cni/bin",
         "env": {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:"
                         "/opt/cni/bin"}},
        {"image": PILOT,
         "files": {"/usr/local/bin/pilot-discovery": str(folder / "pilot-discovery")},
         "entrypoint": ["/usr/local/bin/pilot-discovery"],
         "user": "1337:1337"},  # Dockerfile.pilot's USER; istiod's pod sets runAsNonRoot
        {"image": ZTUNNEL,
         "files": {"/usr/local/bin/ztunnel": str(folder / "ztunnel")},
         "entrypoint": ["/usr/local/bin/ztunnel"], "workingDir": "/"},
    ]


def write_mapping(folder: Path, path: Path) -> Path:
    path.write_text(yaml.safe_dump({"images": image_mapping(folder)}, sort_keys=False))
    return path
