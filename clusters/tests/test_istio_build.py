"""An Istio build folder as images of the local cluster (``images/istio_build.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusters.local.images import executables, istio_build
from clusters.local.provider import LocalCluster


def _build(folder: Path, names: tuple[str, ...] = istio_build.BINARIES) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


def test_a_missing_or_partial_build_is_named(tmp_path):
    with pytest.raises(istio_build.IstioBuildMissing, match="AMBIENT_HARNESS_ISTIO_BIN is not set"):
        istio_build.find({})
    partial = _build(tmp_path / "bin", ("istioctl", "pilot-discovery"))
    with pytest.raises(istio_build.IstioBuildMissing,
                       match="lacks executable istio-cni, install-cni, ztunnel"):
        istio_build.find({istio_build.ENV_VAR: str(partial)})


def test_the_mapping_runs_each_image_from_the_build(tmp_path):
    build = _build(tmp_path / "bin")
    assert istio_build.find({istio_build.ENV_VAR: str(build)}) == build
    mapped = executables.parse([str(istio_build.write_mapping(build, tmp_path / "m.yaml"))], "t")
    pilot = executables.find(mapped, "docker.io/istio/pilot:1.29.0")
    assert pilot is not None and pilot.entrypoint[0] == "/usr/local/bin/pilot-discovery"
    cni = executables.find(mapped, "gcr.io/istio-release/install-cni:1.29.0-distroless")
    assert cni is not None
    assert cni.files["/opt/cni/bin/istio-cni"] == str(build / "istio-cni")
    ztunnel = executables.find(mapped, "registry.istio.io/release/ztunnel:master")
    assert ztunnel is not None and ztunnel.files["/usr/local/bin/ztunnel"] == str(
        build / "ztunnel")


def test_the_mapping_leaves_another_meshs_images_of_the_same_name_alone(tmp_path):
    """A perf run may measure several meshes on one cluster: Istio's build must not run
    in place of another mesh's ``pilot`` or ``ztunnel`` image."""
    build = _build(tmp_path / "bin")
    mapped = executables.parse([str(istio_build.write_mapping(build, tmp_path / "m.yaml"))], "t")
    for image in ("example.com/mesh/pilot:0.1.0", "example.com/mesh/ztunnel:0.1.0",
                  "example.com/mesh/install-cni:1", "ambient-reference/ambient:0.1.0"):
        assert executables.find(mapped, image) is None, image


def test_a_local_cluster_says_which_images_it_maps(tmp_path, monkeypatch):
    monkeypatch.delenv(executables.ENV_VAR, raising=False)
    c = LocalCluster("maps", root=tmp_path, image_executables=["*/ztunnel=/bin/true"])
    assert c.maps_image("docker.io/istio/ztunnel:1.2")
    assert not c.maps_image("docker.io/istio/pilot:1.2")
