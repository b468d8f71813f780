"""Mesh adapters, checked against a recording fake cluster (fast, no cluster)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters.provider import ClusterError, ClusterProvider, ExecResult
from conformance.adapters import istio as istio_mod
from conformance.adapters.base import (
    FLAVOUR_2022,
    FLAVOUR_TODAY,
    AdapterConfigError,
    AdapterError,
    AdapterUnavailable,
    CertificateAuthority,
    MeshAdapter,
    WaypointInfo,
)
from conformance.adapters.declarative import DeclarativeAdapter
from conformance.adapters.istio import IstioAdapter, waypoint_apply_argv
from conformance.adapters.reference import MANIFEST_DIR, ReferenceAdapter
from conformance.adapters.registry import load_adapter
from profiles.features import (
    ALL_FEATURES,
    CAPTURE,
    HTTP_TELEMETRY,
    INGRESS,
    L4_POLICY,
    L7_POLICY,
    MTLS,
    TCP_TELEMETRY,
    TRAFFIC_SPLIT,
    WALKTHROUGH_TODAY,
    WAYPOINT,
    WAYPOINT_FAIL_CLOSED,
    WAYPOINT_RESTART,
)


class FakeCluster(ClusterProvider):
    """Records what an adapter asks of the cluster; every operation succeeds."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def up(self) -> None: ...

    def teardown(self) -> None: ...

    @property
    def kubeconfig(self) -> Path:
        return Path("/tmp/fake-kubeconfig")

    def exec(self, namespace: str, target: str, argv: list[str], timeout: float = 60) -> ExecResult:
        return ExecResult(0, "", "")

    def apply(self, manifests: Any, namespace: str | None = None) -> list[str]:
        self.calls.append(("apply", manifests if isinstance(manifests, Path) else list(manifests)))
        return []

    def delete(self, manifests: Any, namespace: str | None = None, wait: bool = True) -> list[str]:
        self.calls.append(("delete", manifests))
        return []

    def wait(self, api_version: str, kind: str, name: str, condition: Any,
             namespace: str | None = None, timeout: float = 60,
             description: str = "") -> dict[str, Any]:  # fmt: skip
        ready = {"status": {"conditions": [{"type": "Programmed", "status": "True"}]}}
        assert condition(ready) and not condition({"status": {}})
        self.calls.append(("wait", (api_version, kind, name, namespace)))
        return ready

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
        self.calls.append(("kubectl", args))
        return subprocess.CompletedProcess(list(args), 0, "", "")

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.calls]


# -- reference -------------------------------------------------------------------------


@pytest.fixture
def rollout_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference adapter's wait for its rollout, recorded on the fake cluster."""
    from conformance.adapters import reference

    def record(cluster: FakeCluster, namespace: str, timeout: float) -> None:
        cluster.calls.append(("wait_rolled_out", namespace))

    monkeypatch.setattr(reference, "wait_rolled_out", record)


def test_reference_installs_crds_then_install_and_waits(rollout_waits) -> None:
    cluster = FakeCluster()
    ReferenceAdapter().install(cluster)
    applied = [arg for kind, arg in cluster.calls if kind == "apply"]
    assert applied[0] == MANIFEST_DIR / "crds.yaml"
    shipped = [d for d in yaml.safe_load_all((MANIFEST_DIR / "install.yaml").read_text()) if d]
    assert applied[1] == shipped  # unchanged without image options
    # the wait (every workload rolled out, every pod Ready) comes after both applies
    assert cluster.calls[2:] == [("wait_rolled_out", "istio-system")]


def _images(docs: list[dict]) -> dict[str, list[str]]:
    return {d["metadata"]["name"]: [c["image"] for c in d["spec"]["template"]["spec"]
                                    ["containers"]]
            for d in docs if d.get("kind") in ("Deployment", "DaemonSet")}


def test_reference_image_options_replace_components(rollout_waits) -> None:
    adapter = ReferenceAdapter()
    adapter.configure({"images": {"ztunnel": "example/zt:broken", "waypoint": "example/wp:x"}})
    cluster = FakeCluster()
    adapter.install(cluster)
    docs = [arg for kind, arg in cluster.calls if kind == "apply"][1]
    images = _images(docs)
    assert images["ztunnel"] == ["example/zt:broken"]
    assert images["istiod"] == ["ambient-reference/ambient:0.1.0"]
    [istiod] = [d for d in docs if d["metadata"]["name"] == "istiod" and d["kind"] == "Deployment"]
    env = istiod["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "WAYPOINT_IMAGE", "value": "example/wp:x"} in env
    assert not [kind for kind, _ in cluster.calls if kind == "load_image"]  # not kind


def test_reference_image_option_runs_every_component_from_it(rollout_waits) -> None:
    adapter = ReferenceAdapter()
    adapter.configure({"image": "registry.example/ambient:dev",
                       "images": {"ztunnel": "example/zt:broken"}})
    cluster = FakeCluster()
    adapter.install(cluster)
    docs = [arg for kind, arg in cluster.calls if kind == "apply"][1]
    assert _images(docs) == {"istiod": ["registry.example/ambient:dev"],
                             "ztunnel": ["example/zt:broken"],
                             "istio-ingressgateway": ["registry.example/ambient:dev"]}
    [istiod] = [d for d in docs if d["metadata"]["name"] == "istiod" and d["kind"] == "Deployment"]
    env = istiod["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "WAYPOINT_IMAGE", "value": "registry.example/ambient:dev"} in env


class LoadingCluster(FakeCluster):
    """A cluster that loads images from the local engine, as kind does."""

    name = "kind-fake"
    can_load_images = True

    def __init__(self, missing: set[str] = frozenset()) -> None:
        super().__init__()
        self.missing = missing

    def load_image(self, image: str, archive: Path | None = None) -> None:
        if image in self.missing:
            raise ClusterError(f"kind load docker-image {image}: image not present locally")
        self.calls.append(("load_image", image))


def test_reference_on_kind_loads_its_image_before_installing(rollout_waits) -> None:
    adapter = ReferenceAdapter()
    cluster = LoadingCluster()
    assert adapter.check_available(cluster) is None
    adapter.install(cluster)
    assert cluster.kinds()[:3] == ["load_image", "apply", "apply"]
    assert [a for k, a in cluster.calls if k == "load_image"] == [adapter.default_image()]
    # a build under test is loaded too, the waypoints' image with the rest
    adapter.configure({"images": {"waypoint": "example/wp:x"}})
    cluster = LoadingCluster()
    adapter.install(cluster)
    assert sorted(a for k, a in cluster.calls if k == "load_image") == [
        adapter.default_image(), "example/wp:x"]


def test_reference_on_kind_without_its_image_says_how_to_build_it(rollout_waits) -> None:
    adapter = ReferenceAdapter()
    cluster = LoadingCluster(missing={adapter.default_image()})
    with pytest.raises(AdapterError) as info:
        adapter.install(cluster)
    message = str(info.value)
    assert f"docker build -t {adapter.default_image()} reference-impl" in message
    assert "not present locally" in message and "load_images: false" in message
    assert "apply" not in cluster.kinds()  # nothing half-installed
    # pulled from a registry instead: nothing loaded
    adapter.configure({"image": "registry.example/ambient:1", "load_images": False})
    cluster = LoadingCluster(missing={"registry.example/ambient:1"})
    adapter.install(cluster)
    assert "load_image" not in cluster.kinds()


def test_reference_manifests_name_the_distributions_version() -> None:
    adapter = ReferenceAdapter()
    docs = [d for d in yaml.safe_load_all((MANIFEST_DIR / "install.yaml").read_text()) if d]
    assert all(v == [adapter.default_image()] for v in _images(docs).values())


@pytest.mark.parametrize("options", [{"imagez": {}}, {"images": {"sidecar": "x"}},
                                     {"images": ["x"]}, {"image": ""}, {"image": ["x"]},
                                     {"load_images": "no"}])
def test_reference_rejects_bad_options(options) -> None:
    with pytest.raises(AdapterConfigError):
        ReferenceAdapter().configure(options)


def test_adapters_without_options_refuse_them() -> None:
    # The base class's configure, which an adapter taking no options keeps.
    with pytest.raises(AdapterConfigError, match="takes no options"):
        MeshAdapter.configure(IstioAdapter(), {"images": {}})


def test_reference_uninstall_reverses_order() -> None:
    cluster = FakeCluster()
    ReferenceAdapter().uninstall(cluster)
    assert [a for _, a in cluster.calls] == [
        MANIFEST_DIR / "install.yaml",
        MANIFEST_DIR / "crds.yaml",
    ]


def test_reference_claims_and_version() -> None:
    adapter = ReferenceAdapter()
    assert adapter.features() == ALL_FEATURES
    assert adapter.components().cni_agent is None
    assert adapter.certificate_authority() is not None
    assert IstioAdapter().certificate_authority() is None  # gRPC: not spoken by the suite
    assert IstioAdapter().components().cni_agent == "k8s-app=istio-cni-node"
    assert adapter.api_flavours() == {FLAVOUR_TODAY, FLAVOUR_2022}
    assert adapter.version() not in ("", "unknown")
    assert adapter.metrics_locations()["waypoint"] == "15020/stats/prometheus"
    # On a cluster that cannot load images, the image must be published and named.
    reason = adapter.check_available(FakeCluster()) or ""
    assert "not published" in reason and "'image' option" in reason
    assert "docker build -t ambient-reference/ambient:" in reason
    adapter.configure({"image": "registry.example/ambient:1"})
    assert adapter.check_available(FakeCluster()) is None
    adapter.configure({"images": {c: f"registry.example/{c}:1" for c in
                                  ("pilot", "ztunnel", "waypoint", "ingress")}})
    assert adapter.check_available(FakeCluster()) is None
    adapter.configure({"load_images": False})  # kind, pulling from a registry: name it
    assert "not published" in (adapter.check_available(LoadingCluster()) or "")


def test_reference_waypoint_today() -> None:
    cluster = FakeCluster()
    info = ReferenceAdapter().add_waypoint(cluster, "bookinfo", "waypoint")
    assert info == WaypointInfo("waypoint", "bookinfo", "waypoint", FLAVOUR_TODAY)
    (gw,) = cluster.calls[0][1]
    assert gw["kind"] == "Gateway" and gw["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gw["spec"]["gatewayClassName"] == "istio-waypoint"
    assert gw["spec"]["listeners"] == [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
    assert gw["metadata"]["labels"] == {"istio.io/waypoint-for": "service"}
    assert cluster.calls[1] == (
        "wait",
        ("gateway.networking.k8s.io/v1", "Gateway", "waypoint", "bookinfo"),
    )


def test_reference_waypoint_2022() -> None:
    cluster = FakeCluster()
    info = ReferenceAdapter().add_waypoint(
        cluster, "default", "productpage", flavour=FLAVOUR_2022,
        service_account="bookinfo-productpage")  # fmt: skip
    assert info.deployment == "bookinfo-productpage-waypoint-proxy"
    (gw,) = cluster.calls[0][1]
    assert gw["spec"] == {"gatewayClassName": "istio-mesh"}
    assert gw["metadata"]["annotations"] == {"istio.io/service-account": "bookinfo-productpage"}
    assert cluster.kinds() == ["apply", "wait"]


def test_2022_waypoint_needs_service_account() -> None:
    with pytest.raises(AdapterError, match="service_account"):
        ReferenceAdapter().add_waypoint(FakeCluster(), "ns", "wp", flavour=FLAVOUR_2022)


def test_enroll_use_waypoint_labels() -> None:
    cluster, adapter = FakeCluster(), ReferenceAdapter()
    adapter.enroll(cluster, "ns1")
    adapter.unenroll(cluster, "ns1")
    wp = WaypointInfo("wp", "ns1", "wp")
    adapter.use_waypoint(cluster, "ns1", "service", "reviews", wp)
    adapter.use_waypoint(cluster, "ns2", "namespace", "ns2", wp)
    adapter.use_waypoint(
        cluster, "ns1", "service", "x", WaypointInfo("a", "ns1", "b", FLAVOUR_2022)
    )
    assert [a for _, a in cluster.calls] == [
        ("label", "namespace", "ns1", "istio.io/dataplane-mode=ambient", "--overwrite"),
        ("label", "namespace", "ns1", "istio.io/dataplane-mode-"),
        ("label", "service", "reviews", "-n", "ns1", "istio.io/use-waypoint=wp", "--overwrite"),
        ("label", "namespace", "ns2", "istio.io/use-waypoint=wp",
         "istio.io/use-waypoint-namespace=ns1", "--overwrite"),
    ]  # fmt: skip


def test_unuse_waypoint_removes_both_binding_labels() -> None:
    cluster, adapter = FakeCluster(), ReferenceAdapter()
    adapter.unuse_waypoint(cluster, "ns1", "service", "reviews")
    adapter.unuse_waypoint(cluster, "ns1", "namespace", "ns1")
    assert [a for _, a in cluster.calls] == [
        ("label", "service", "reviews", "-n", "ns1", "istio.io/use-waypoint-",
         "istio.io/use-waypoint-namespace-"),
        ("label", "namespace", "ns1", "istio.io/use-waypoint-",
         "istio.io/use-waypoint-namespace-"),
    ]  # fmt: skip
    with pytest.raises(AdapterError, match="namespace, service or pod"):
        adapter.unuse_waypoint(cluster, "ns1", "deployment", "x")


# -- istio -----------------------------------------------------------------------------


def test_istio_argv() -> None:
    assert istio_mod.install_argv() == ["istioctl", "install", "--set", "profile=ambient", "-y"]
    assert istio_mod.install_argv("/bin/istioctl", "/k")[:2] == ["/bin/istioctl", "--kubeconfig=/k"]
    assert istio_mod.uninstall_argv() == ["istioctl", "uninstall", "--purge", "-y"]
    assert istio_mod.version_argv() == ["istioctl", "version", "--remote=false", "-o", "json"]
    assert waypoint_apply_argv("ns", "wp", wait=False) == [
        "istioctl", "waypoint", "apply", "-n", "ns", "--name", "wp", "--for", "service",
    ]  # fmt: skip
    assert waypoint_apply_argv("ns", "wp", None, wait=False)[-1] == "wp"


def test_istio_parse_version() -> None:
    out = (
        '{"clientVersion": {"version": "1.24.0"}, "meshVersion": [{"Info": {"version": "1.23.2"}}]}'
    )
    assert istio_mod.parse_version(out) == "1.23.2"
    assert istio_mod.parse_version('{"clientVersion": {"version": "1.24.0"}}') == "1.24.0"
    source_build = ('{"clientVersion": {"version": "86c9f01fd735", '
                    '"tag": "1.31.0-alpha.0-109-g86c9f01fd73"}}')
    assert istio_mod.parse_version(source_build) == "1.31.0-alpha.0-109-g86c9f01fd73"


def test_istio_unavailable_without_istioctl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(istio_mod.shutil, "which", lambda _name: None)
    adapter = IstioAdapter()
    reason = adapter.check_available(FakeCluster())
    assert reason is not None and reason.startswith("istioctl not found on PATH: install istioctl")
    with pytest.raises(AdapterUnavailable, match="istioctl not found on PATH"):
        adapter.install(FakeCluster())
    with pytest.raises(AdapterUnavailable):
        adapter.version()


def test_istio_runs_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(istio_mod.shutil, "which", lambda _name: "/usr/bin/istioctl")
    ran: list[tuple[list[str], dict[str, str]]] = []

    def runner(argv: Any, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        ran.append((list(argv), env))
        return subprocess.CompletedProcess(argv, 0, "", "")

    cluster, adapter = FakeCluster(), IstioAdapter(runner=runner)
    assert adapter.check_available(cluster) is None
    adapter.install(cluster)
    assert ran[0][0][2:] == ["install", "--set", "profile=ambient", "-y"]
    assert ran[0][1] == {"KUBECONFIG": "/tmp/fake-kubeconfig"}
    info = adapter.add_waypoint(cluster, "ns", "wp")
    assert ran[1][0][2:] == ["waypoint", "apply", "-n", "ns", "--name", "wp", "--for", "service",
                             "--wait"]  # fmt: skip
    assert info == WaypointInfo("wp", "ns", "wp", FLAVOUR_TODAY)
    assert adapter.api_flavours() == {FLAVOUR_TODAY}
    with pytest.raises(AdapterError, match="istio-mesh"):
        adapter.add_waypoint(cluster, "ns", "wp", flavour=FLAVOUR_2022, service_account="sa")


def test_istio_failure_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(istio_mod.shutil, "which", lambda _name: "/usr/bin/istioctl")
    adapter = IstioAdapter(runner=lambda a, e: subprocess.CompletedProcess(a, 1, "", "boom"))
    with pytest.raises(AdapterError, match=r"install --set profile=ambient -y failed \(1\): boom"):
        adapter.install(FakeCluster())


def test_istio_adapter_options_point_it_at_ones_own_build(tmp_path: Path) -> None:
    """``istioctl`` and ``sets`` from --adapter-config: the install runs that istioctl
    with those --set values; a typo or a malformed value is refused, saying why."""
    istioctl = tmp_path / "istioctl"
    istioctl.write_text("#!/bin/sh\n")
    istioctl.chmod(0o755)
    ran: list[list[str]] = []
    adapter = IstioAdapter(runner=lambda a, e: ran.append(list(a)) or  # type: ignore[func-returns-value]
                           subprocess.CompletedProcess(a, 0, "", ""))
    adapter.configure({"istioctl": str(istioctl),
                       "sets": ["hub=localhost:5000/istio", "tag=dev"]})
    adapter.install(FakeCluster())
    assert ran[-1] == [str(istioctl), "--kubeconfig=/tmp/fake-kubeconfig", "install", "--set",
                       "profile=ambient", "--set", "hub=localhost:5000/istio", "--set", "tag=dev",
                       "-y"]
    with pytest.raises(AdapterConfigError, match=r"unknown option.*hubb.*known: istioctl, sets"):
        IstioAdapter().configure({"hubb": "x"})
    with pytest.raises(AdapterConfigError, match="key=value"):
        IstioAdapter().configure({"sets": "tag=dev"})
    missing = IstioAdapter()
    missing.configure({"istioctl": str(tmp_path / "nowhere" / "istioctl")})
    with pytest.raises(AdapterUnavailable, match="not an executable file"):
        missing.istioctl()


def test_istio_on_a_local_cluster_without_envoy_gives_up_what_needs_it() -> None:
    """Waypoints, L7 policy, splits, HTTP telemetry and ingress are Envoy, and the
    walkthrough uses them: without its image mapped they are unsupported there, with
    the reason; L4 stays claimed."""
    local_type = type("LocalCluster", (FakeCluster,), {"__module__": "clusters.local.provider"})
    mapped = {"docker.io/istio/pilot", "docker.io/istio/install-cni", "docker.io/istio/ztunnel"}
    cluster = local_type()
    cluster.maps_image = lambda image: image in mapped  # type: ignore[attr-defined]
    limits = IstioAdapter().unsupported_on(cluster)
    assert set(limits) == {WAYPOINT, L7_POLICY, TRAFFIC_SPLIT, HTTP_TELEMETRY, INGRESS,
                           WALKTHROUGH_TODAY, WAYPOINT_FAIL_CLOSED, WAYPOINT_RESTART}
    assert all("docker.io/istio/proxyv2" in why for why in limits.values())
    assert not set(limits) & {CAPTURE, MTLS, L4_POLICY, TCP_TELEMETRY}
    mapped.add("docker.io/istio/proxyv2")
    assert IstioAdapter().unsupported_on(cluster) == {}
    assert IstioAdapter().unsupported_on(FakeCluster()) == {}  # kind, existing: Envoy runs


def test_istio_on_local_cluster_needs_its_images_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(istio_mod.shutil, "which", lambda _name: "/usr/bin/istioctl")
    local_type = type("LocalCluster", (FakeCluster,), {"__module__": "clusters.local.provider"})
    reason = IstioAdapter().check_available(local_type()) or ""
    assert "no Istio build is mapped to docker.io/istio/pilot" in reason
    assert "--image-exec" in reason
    mapped = {"docker.io/istio/pilot", "docker.io/istio/install-cni"}
    partly = local_type()
    partly.maps_image = lambda image: image in mapped  # type: ignore[attr-defined]
    assert "mapped to docker.io/istio/ztunnel:" in (IstioAdapter().check_available(partly) or "")
    mapped.add("docker.io/istio/ztunnel")
    assert IstioAdapter().check_available(partly) is None
    ran: list[list[str]] = []
    adapter = IstioAdapter(runner=lambda a, e: ran.append(list(a)) or  # type: ignore[func-returns-value]
                           subprocess.CompletedProcess(a, 0, "", ""))
    adapter.install(partly)
    assert ran == [["/usr/bin/istioctl", "--kubeconfig=/tmp/fake-kubeconfig", "install", "--set",
                    "profile=ambient", "--set",
                    "values.cni.ambient.shareHostNetworkNamespace=true", "-y"]]
    assert partly.calls == []  # no Gateway API CRDs fetched


# -- declarative -----------------------------------------------------------------------

GOOD = {
    "name": "acme-mesh",
    "version": "1.4.2",
    "install": {"manifests": ["crds.yaml", "install.yaml"], "wait_namespaces": ["acme-system"]},
    "enroll": {"label": {"acme.io/mesh": "on"}},
    "waypoint": {
        "flavours": ["istio-waypoint"],
        "manifest": (
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
            "metadata: {name: '{name}', namespace: '{namespace}'}\n"
            "spec: {gatewayClassName: istio-waypoint}\n"
        ),
        "deployment": "{name}-proxy",
    },
    "metrics": {"waypoint": "9090/metrics"},
    "root_namespace": "acme-system",
    "features": ["capture", "mtls"],
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_declarative_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conformance.adapters import declarative

    waited: list[str] = []
    monkeypatch.setattr(declarative, "wait_rolled_out",
                        lambda cluster, namespace, timeout: waited.append(namespace))
    for name in ("crds.yaml", "install.yaml"):
        (tmp_path / name).write_text("{}\n")
    adapter = load_adapter(str(write(tmp_path, GOOD)))
    assert isinstance(adapter, DeclarativeAdapter)
    assert (adapter.name, adapter.version()) == ("acme-mesh", "1.4.2")
    assert adapter.features() == {"capture", "mtls"}
    assert adapter.api_flavours() == {FLAVOUR_TODAY}
    assert adapter.metrics_locations() == {
        "ztunnel": "15020/stats/prometheus", "waypoint": "9090/metrics"}  # fmt: skip
    assert adapter.root_namespace() == "acme-system"
    cluster = FakeCluster()
    assert adapter.check_available(cluster) is None
    adapter.install(cluster)
    assert cluster.calls[:2] == [
        ("apply", tmp_path / "crds.yaml"),
        ("apply", tmp_path / "install.yaml"),
    ]
    assert len(cluster.calls) == 2 and waited == ["acme-system"]
    adapter.enroll(cluster, "ns")
    assert cluster.calls[-1] == (
        "kubectl",
        ("label", "namespace", "ns", "acme.io/mesh=on", "--overwrite"),
    )
    cluster.calls.clear()
    info = adapter.add_waypoint(cluster, "ns", "wp")
    assert info == WaypointInfo("wp", "ns", "wp-proxy", FLAVOUR_TODAY)
    (gw,) = cluster.calls[0][1]
    assert gw["metadata"] == {"name": "wp", "namespace": "ns"}
    assert cluster.calls[1] == ("wait", ("gateway.networking.k8s.io/v1", "Gateway", "wp", "ns"))
    with pytest.raises(AdapterError, match="istio-mesh"):
        adapter.add_waypoint(cluster, "ns", "wp", flavour=FLAVOUR_2022, service_account="sa")
    cluster.calls.clear()
    adapter.uninstall(cluster)
    assert cluster.calls == [
        ("delete", tmp_path / "install.yaml"),
        ("delete", tmp_path / "crds.yaml"),
    ]


def test_declarative_defaults(tmp_path: Path) -> None:
    adapter = load_adapter(write(tmp_path, {"name": "minimal"}))
    assert adapter.enroll_labels() == {"istio.io/dataplane-mode": "ambient"}
    assert adapter.features() == frozenset() and adapter.api_flavours() == frozenset()
    assert adapter.version() == "unknown"
    assert adapter.root_namespace() == "istio-system"  # Istio's meshConfig default
    assert adapter.components() == IstioAdapter().components()  # Istio's names
    assert adapter.certificate_authority() is None  # none unless given
    with_ca = load_adapter(write(tmp_path, {"name": "x", "features": ["ca-identity-binding"],
                                            "certificate_authority": {"url": "https://ca:1/c",
                                                                      "audience": "istio-ca"}}))
    assert with_ca.certificate_authority() == CertificateAuthority("https://ca:1/c", "json-https",
                                                                   "istio-ca")
    other = load_adapter(write(tmp_path, {"name": "x", "components": {
        "namespace": "acme-system", "node_proxy": "app=acme-node", "cni_agent": None}}))
    assert (other.components().namespace, other.components().node_proxy,
            other.components().control_plane, other.components().cni_agent) == (
        "acme-system", "app=acme-node", "istiod", None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": "1"}, "field `name`: required"),
        ({"name": 3}, "field `name`: expected str, got int"),
        ({"name": "x", "features": ["teleport"]}, "field `features`: unknown feature 'teleport'"),
        ({"name": "x", "features": "capture"}, "field `features`: expected list"),
        (
            {"name": "x", "install": {"manifests": "a.yaml"}},
            "field `install.manifests`: expected list",
        ),
        ({"name": "x", "install": {"commands": [["ok"], "bad"]}}, "field `install.commands[1]`"),
        ({"name": "x", "install": {"manifests": ["https://x/y.yaml"]}}, "URLs are not accepted"),
        ({"name": "x", "instal": {}}, "field `instal`: unknown field"),
        ({"name": "x", "waypoint": {"flavours": ["istio-mesh"]}}, "needs `manifest` or `commands`"),
        ({"name": "x", "waypoint": {"flavours": ["x"], "commands": [["a"]]}}, "unknown flavour"),
        ({"name": "x", "enroll": {"label": []}}, "field `enroll.label`: expected dict"),
        ({"name": "x", "root_namespace": ""}, "field `root_namespace`: must not be empty"),
        ({"name": "x", "components": {"proxy": "a"}}, "field `components.proxy`: unknown field"),
        ({"name": "x", "components": {"node_proxy": None}}, "field `components.node_proxy`"),
        ({"name": "x", "features": ["ca-identity-binding"]},
         "field `certificate_authority`: missing, yet `features` claims ca-identity-binding"),
        ({"name": "x", "certificate_authority": {"protocol": "json-https"}},
         "field `certificate_authority.url`: required"),
        ({"name": "x", "certificate_authority": {"url": "https://ca", "protocol": "grpc"}},
         "field `certificate_authority.protocol`: unknown protocol 'grpc'"),
        (["name"], "must be a YAML mapping"),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_declarative_bad_files(tmp_path: Path, data: Any, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(AdapterConfigError) as err:
        load_adapter(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_declarative_commands_placeholders_and_order(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/declarative-adapter.md says of commands: run in the file's folder with
    the cluster's KUBECONFIG (not the version command), ``{kubeconfig}`` filled in commands
    only, the waypoint's placeholders in its manifest, commands and deployment,
    ``ready: {condition: null}`` waits for nothing, and an uninstall runs its commands
    before deleting its manifests."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    (tmp_path / "install.yaml").write_text("{}\n")
    log = "echo {tag} $KUBECONFIG $(pwd) >> log"
    adapter = load_adapter(write(tmp_path, {
        "name": "acme-mesh",
        "version_command": ["sh", "-c", "echo ' 2.0 '; echo version ${KUBECONFIG:-none} >> log"],
        "install": {"commands": [["sh", "-c", log.format(tag="install")]]},
        "uninstall": {"commands": [["sh", "-c", log.format(tag="uninstall")]],
                      "manifests": ["install.yaml"]},
        "waypoint": {
            "flavours": ["istio-mesh"],
            "manifest": "kind: Gateway\nmetadata: {name: '{name}', annotations: "
                        "{a: '{service_account} {for} {kubeconfig} {other}'}}\n",
            "commands": [["sh", "-c", "echo wp {name} {namespace} {service_account} {for} "
                                      "{kubeconfig} >> log"]],
            "deployment": "{service_account}-waypoint-proxy",
            "ready": {"condition": None},
        },
    }))
    here, kubeconfig = tmp_path.resolve(), "/tmp/fake-kubeconfig"
    assert adapter.version() == "2.0"
    cluster = FakeCluster()
    adapter.install(cluster)
    info = adapter.add_waypoint(cluster, "ns", "wp", flavour=FLAVOUR_2022, service_account="sa")
    assert info == WaypointInfo("wp", "ns", "sa-waypoint-proxy", FLAVOUR_2022)
    [(verb, [gateway])] = cluster.calls  # applied, and nothing waited on
    assert verb == "apply"
    assert gateway["metadata"] == {"name": "wp", "annotations": {
        "a": "sa service {kubeconfig} {other}"}}  # unknown placeholders stay as written
    cluster.calls.clear()
    adapter.uninstall(cluster)
    assert cluster.calls == [("delete", tmp_path / "install.yaml")]
    assert (tmp_path / "log").read_text().splitlines() == [
        "version none",
        f"install {kubeconfig} {here}",
        f"wp wp ns sa service {kubeconfig}",
        f"uninstall {kubeconfig} {here}",
    ]


def test_declarative_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AdapterConfigError, match="cannot read adapter file"):
        load_adapter(str(tmp_path / "nope.yaml"))


# -- registry --------------------------------------------------------------------------


def test_registry() -> None:
    assert isinstance(load_adapter("reference"), ReferenceAdapter)
    assert isinstance(load_adapter("istio"), IstioAdapter)
    with pytest.raises(AdapterConfigError, match="unknown mesh adapter 'linkerd'"):
        load_adapter("linkerd")


def test_suite_never_imports_the_implementation() -> None:
    root = Path(__file__).resolve().parents[1]
    broken = root / "tests" / "broken"  # broken builds of the implementation, run as images
    for source in root.rglob("*.py"):
        if source == Path(__file__).resolve() or broken in source.parents:
            continue
        text = source.read_text()
        assert "import ambient_ref" not in text and "from ambient_ref" not in text, source


def test_declarative_commands_that_hang_or_cannot_run_are_adapter_errors(tmp_path: Path) -> None:
    """A command that outlives its deadline, or a path that is not executable, ends the
    install with an error naming the command, never a traceback from subprocess."""
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    path = write(tmp_path, {"name": "acme", "version": "1"})
    adapter = load_adapter(str(path))
    assert isinstance(adapter, DeclarativeAdapter)
    adapter.command_timeout = 0.5
    with pytest.raises(AdapterError, match=r"sleep 5 did not finish within 0.5s"):
        adapter._run(["sleep", "5"], None, {})
    with pytest.raises(AdapterError, match=r"cannot run .*not-executable.sh.*execute permission"):
        adapter._run([str(script)], None, {})


def test_declarative_wait_namespaces_waits_for_rollout_and_names_what_is_pending(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``install.wait_namespaces`` is the suite's rollout judgement for each namespace,
    in order (workloads listed at every look, so late ones are waited for); one that
    never rolls out ends the install with an AdapterError naming what is pending."""
    from conformance.adapters import declarative
    from conformance.waiting import NotConverged

    waited: list[tuple[str, float]] = []

    def rolled_out(cluster: ClusterProvider, namespace: str, timeout: float) -> None:
        waited.append((namespace, timeout))
        if namespace == "stuck":
            raise NotConverged("timed out after 120s waiting until every workload in stuck "
                               "is rolled out; last observed: {'daemonset/ztunnel': '0 of 2'}")

    monkeypatch.setattr(declarative, "wait_rolled_out", rolled_out)
    adapter = load_adapter(write(tmp_path, {"name": "acme", "version": "1",
                                            "install": {"wait_namespaces": ["a", "b"]}}))
    adapter.install(FakeCluster())
    assert waited == [("a", declarative.WAIT_NAMESPACE_S), ("b", declarative.WAIT_NAMESPACE_S)]
    stuck = load_adapter(write(tmp_path, {"name": "acme", "version": "1",
                                          "install": {"wait_namespaces": ["stuck"]}}))
    with pytest.raises(AdapterError, match=r"install.wait_namespaces: .*daemonset/ztunnel"):
        stuck.install(FakeCluster())


def test_declarative_waypoint_recipes_per_flavour(tmp_path: Path) -> None:
    """``waypoint`` may list one recipe per flavour (the 2022 Gateway differs from
    today's); each flavour is made by its own recipe, and two recipes for one flavour,
    or an empty list, are refused naming the field."""
    today = {"flavours": ["istio-waypoint"],
             "manifest": "kind: Gateway\nmetadata: {name: '{name}'}\n"}
    old = {"flavours": ["istio-mesh"], "commands": [["true"]],
           "deployment": "{service_account}-waypoint-proxy"}
    adapter = load_adapter(write(tmp_path, {"name": "acme", "version": "1",
                                            "waypoint": [today, old]}))
    assert adapter.api_flavours() == {FLAVOUR_TODAY, FLAVOUR_2022}
    cluster = FakeCluster()
    info = adapter.add_waypoint(cluster, "ns", "wp", flavour=FLAVOUR_2022, service_account="sa")
    assert info.deployment == "sa-waypoint-proxy" and cluster.calls == []  # commands only
    adapter.add_waypoint(cluster, "ns", "wp2")
    assert [verb for verb, _ in cluster.calls] == ["apply", "wait"]
    for bad, message in (([today, today], "field `waypoint[1].flavours`: flavour 'istio-waypoint'"),
                         ([], "field `waypoint`: an empty list"),
                         ([today, {"flavours": ["istio-mesh"]}], "field `waypoint[1]`: needs")):
        with pytest.raises(AdapterConfigError, match=re.escape(message)):
            load_adapter(write(tmp_path, {"name": "acme", "waypoint": bad}))
