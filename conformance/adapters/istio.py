"""The adapter for real Istio, driven by ``istioctl`` as its docs instruct.

Real Istio runs on the embedded local cluster only from binaries built from source
and mapped to its images (``--image-exec``; README: "Real Istio on the local
cluster"), and nowhere without istioctl.  The commands are built by pure functions
that are unit-tested, and :meth:`IstioAdapter.check_available` tells the suite *why*
it must skip when something is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clusters.provider import ClusterProvider
from profiles.features import (
    CAPTURE,
    CONTROL_PLANE_OUTAGE,
    HBONE_AUTHN,
    HTTP_TELEMETRY,
    INGRESS,
    L4_POLICY,
    L7_POLICY,
    MTLS,
    NODE_AGENT_RESTART,
    POLICY_RECHECK,
    TCP_TELEMETRY,
    TRAFFIC_SPLIT,
    WALKTHROUGH_TODAY,
    WAYPOINT,
    WAYPOINT_FAIL_CLOSED,
    WAYPOINT_RESTART,
)

from .base import (
    FLAVOUR_2022,
    FLAVOUR_TODAY,
    AdapterConfigError,
    AdapterError,
    AdapterUnavailable,
    Flavour,
    MeshAdapter,
    WaypointInfo,
    gateway_condition,
    waypoint_gateway,
)

ISTIOCTL_MISSING = (
    "istioctl not found on PATH: install istioctl "
    "(https://istio.io/latest/docs/setup/getting-started/#download) or pass its path"
)
LOCAL_CLUSTER_REASON = (
    "the local cluster runs programs, not container images, and no Istio build is mapped "
    "to {missing}: map binaries built from source with --image-exec (README: Real Istio "
    "on the local cluster), or use the kind or existing cluster provider"
)
# Istio's images in the ambient profile, as the local cluster must map them
LOCAL_IMAGES = ("docker.io/istio/pilot", "docker.io/istio/install-cni", "docker.io/istio/ztunnel")
# Waypoints and gateways are Envoy, in Istio's proxyv2 image (istio/istio
# pilot/docker/Dockerfile.proxyv2), which a build of istiod, istio-cni and ztunnel
# from source does not include; these features need one (the walkthrough sends
# traffic through the ingress gateway from its first steps, and adds waypoints).
ENVOY_IMAGE = "docker.io/istio/proxyv2"
ENVOY_FEATURES = (WAYPOINT, L7_POLICY, TRAFFIC_SPLIT, HTTP_TELEMETRY, INGRESS,
                  WALKTHROUGH_TODAY, WAYPOINT_FAIL_CLOSED, WAYPOINT_RESTART)
NO_ENVOY_REASON = (
    "no Envoy on this local cluster: waypoints and gateways run Istio's proxyv2 image "
    f"({ENVOY_IMAGE}), and no --image-exec mapping provides it (a build of istiod, "
    "istio-cni and ztunnel from source has no Envoy)"
)
# On the local cluster istio-cni shares the node's network namespace, as it runs on a
# node (istio/istio manifests/charts/istio-cni/values.yaml, ambient.shareHostNetworkNamespace)
LOCAL_CLUSTER_SETS = ("values.cni.ambient.shareHostNetworkNamespace=true",)
# Ambient waypoints need the Gateway API CRDs, which Istio does not install itself.
# Pinned so a run is reproducible.
GATEWAY_API_CRDS = (
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.2.1/standard-install.yaml"
)

Runner = Callable[[Sequence[str], dict[str, str]], subprocess.CompletedProcess[str]]


# -- command building (pure, unit-tested) ---------------------------------------------


def _base(istioctl: str, kubeconfig: Path | str | None) -> list[str]:
    return [istioctl, *([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])]


def install_argv(istioctl: str = "istioctl", kubeconfig: Path | str | None = None,
                 sets: Sequence[str] = ()) -> list[str]:
    """``istioctl install --set profile=ambient -y``: the documented ambient install
    (``sets``: more ``--set`` values)."""
    more = [a for s in sets for a in ("--set", s)]
    return [*_base(istioctl, kubeconfig), "install", "--set", "profile=ambient", *more, "-y"]


def _is_local(cluster: ClusterProvider) -> bool:
    # By module, not isinstance: importing the local provider would pull its
    # whole machinery into a process that may not use it.
    return type(cluster).__module__.startswith("clusters.local")


def _maps(cluster: ClusterProvider, image: str) -> bool:
    """Whether the local ``cluster`` runs ``image`` from a mapped build."""
    maps = getattr(cluster, "maps_image", None)
    return maps is not None and bool(maps(image))


def uninstall_argv(istioctl: str = "istioctl", kubeconfig: Path | str | None = None) -> list[str]:
    """``istioctl uninstall --purge -y``: removes every Istio resource it installed."""
    return [*_base(istioctl, kubeconfig), "uninstall", "--purge", "-y"]


def version_argv(istioctl: str = "istioctl") -> list[str]:
    """``istioctl version --remote=false -o json``: the version of the istioctl that
    installs the mesh, which is the version it installs.  Asked before the install,
    so it must not contact a cluster: with ``--remote`` (the default) and no control
    plane yet, istioctl keeps trying to reach one."""
    return [istioctl, "version", "--remote=false", "-o", "json"]


def waypoint_apply_argv(
    namespace: str,
    name: str,
    for_: str | None = "service",
    *,
    istioctl: str = "istioctl",
    kubeconfig: Path | str | None = None,
    wait: bool = True,
) -> list[str]:
    """``istioctl waypoint apply -n NS --name NAME [--for service] [--wait]``."""
    argv = [*_base(istioctl, kubeconfig), "waypoint", "apply", "-n", namespace, "--name", name]
    if for_:
        argv += ["--for", for_]
    if wait:
        argv.append("--wait")
    return argv


def parse_version(stdout: str) -> str:
    """The version from ``istioctl version -o json``: the control plane's if it is
    there, else the client's.  A build from source reports its commit as ``version``
    and the release it is on the way to as ``tag`` (``1.31.0-alpha.0-109-g86c9f01fd73``,
    istio/istio common/scripts/report_build_info.sh), the more telling of the two."""
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError:
        return stdout.strip() or "unknown"
    for mesh in data.get("meshVersion") or ():
        version = (mesh.get("Info") or mesh.get("info") or {}).get("version")
        if version:
            return str(version)
    client = data.get("clientVersion") or {}
    return str(client.get("tag") or client.get("version") or "unknown")


def _run(argv: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, env={**os.environ, **env}, timeout=600
    )


# -- the adapter -----------------------------------------------------------------------


class IstioAdapter(MeshAdapter):
    """Real Istio in ambient mode.

    Waypoints are created with ``istioctl waypoint apply`` (``waypoint_via="istioctl"``,
    the documented way) or by applying the Gateway (``"gateway"``).  Today's Istio
    dropped the 2022 ``istio-mesh`` class, so only ``istio-waypoint`` is claimed.
    """

    name = "istio"

    def __init__(
        self,
        istioctl: str | None = None,
        *,
        waypoint_via: str = "istioctl",
        runner: Runner | None = None,
        waypoint_timeout: float = 120,
    ) -> None:
        if waypoint_via not in ("istioctl", "gateway"):
            raise AdapterError(
                f"waypoint_via must be 'istioctl' or 'gateway', not {waypoint_via!r}"
            )
        self._istioctl = istioctl
        self.waypoint_via = waypoint_via
        self._runner = runner or _run
        self.waypoint_timeout = waypoint_timeout
        self.sets: tuple[str, ...] = ()

    def configure(self, options: Mapping[str, Any]) -> None:
        """``istioctl: <path>`` installs with that istioctl (a build of one's own), and
        ``sets: [<key>=<value>, ...]`` adds ``--set`` values to the install: with
        images of one's own build loaded into kind, ``hub=<registry>`` and
        ``tag=<tag>`` (istioctl's ``values.global.hub``/``tag`` shorthands) make
        the install use them."""
        unknown = set(options) - {"istioctl", "sets"}
        if unknown:
            raise AdapterConfigError(f"istio adapter: unknown option(s) "
                                     f"{', '.join(sorted(unknown))}; known: istioctl, sets")
        sets = options.get("sets") or []
        if not isinstance(sets, list) or not all(
                isinstance(v, str) and "=" in v.strip("=") for v in sets):
            raise AdapterConfigError("istio adapter: sets must be a list of key=value "
                                     "strings, as istioctl's --set takes them "
                                     "(e.g. [hub=localhost:5000/istio, tag=dev])")
        self.sets = tuple(sets)
        if options.get("istioctl"):
            self._istioctl = str(options["istioctl"])

    # -- availability -------------------------------------------------------------------

    def istioctl(self) -> str:
        """The istioctl to run; raises AdapterUnavailable when there is none."""
        found = shutil.which(self._istioctl or "istioctl")
        if found is None and self._istioctl and os.sep in self._istioctl:
            raise AdapterUnavailable(f"istioctl {self._istioctl} (the istio adapter's "
                                     "istioctl option) is not an executable file")
        if found is None:
            raise AdapterUnavailable(ISTIOCTL_MISSING)
        return found

    def check_available(self, cluster: ClusterProvider) -> str | None:
        try:
            self.istioctl()
        except AdapterUnavailable as exc:
            return str(exc)
        if _is_local(cluster):
            missing = [i for i in LOCAL_IMAGES if not _maps(cluster, i)]
            if missing:
                return LOCAL_CLUSTER_REASON.format(missing=", ".join(missing))
        return None

    def unsupported_on(self, cluster: ClusterProvider) -> dict[str, str]:
        """On the local cluster, the features that need Envoy unless its image is mapped."""
        if not _is_local(cluster) or _maps(cluster, ENVOY_IMAGE):
            return {}
        return dict.fromkeys(ENVOY_FEATURES, NO_ENVOY_REASON)

    def _exec(self, argv: Sequence[str], cluster: ClusterProvider | None = None) -> str:
        env = {"KUBECONFIG": str(cluster.kubeconfig)} if cluster is not None else {}
        proc = self._runner(argv, env)
        if proc.returncode != 0:
            raise AdapterError(
                f"{' '.join(argv)} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout or '').strip()}"
            )
        return proc.stdout

    # -- claims -------------------------------------------------------------------------

    def version(self) -> str:
        return parse_version(self._exec(version_argv(self.istioctl())))

    def features(self) -> frozenset[str]:
        return frozenset(
            {
                CAPTURE,
                MTLS,
                L4_POLICY,
                TCP_TELEMETRY,
                WAYPOINT,
                L7_POLICY,
                TRAFFIC_SPLIT,
                HTTP_TELEMETRY,
                INGRESS,
                WALKTHROUGH_TODAY,
                HBONE_AUTHN,
                POLICY_RECHECK,
                WAYPOINT_FAIL_CLOSED,
                NODE_AGENT_RESTART,
                CONTROL_PLANE_OUTAGE,
                WAYPOINT_RESTART,
            }
        )

    def api_flavours(self) -> frozenset[str]:
        return frozenset({FLAVOUR_TODAY})

    # -- life cycle -------------------------------------------------------------------

    def install(self, cluster: ClusterProvider) -> None:
        """Gateway API CRDs if absent, then ``istioctl install`` (which waits for readiness)."""
        istioctl = self.istioctl()
        if _is_local(cluster):
            # No download: the local cluster's traffic stays on this machine, and its
            # waypoints (Envoy) are not part of a source build of istiod, istio-cni
            # and ztunnel, so no Gateway API CRDs are needed.
            self._exec(install_argv(istioctl, cluster.kubeconfig,
                                    (*LOCAL_CLUSTER_SETS, *self.sets)), cluster)
            return
        crd = cluster.kubectl("get", "crd", "gateways.gateway.networking.k8s.io", check=False)
        if crd.returncode != 0:
            cluster.kubectl("apply", "-f", GATEWAY_API_CRDS)
        self._exec(install_argv(istioctl, cluster.kubeconfig, self.sets), cluster)

    def uninstall(self, cluster: ClusterProvider) -> None:
        self._exec(uninstall_argv(self.istioctl(), cluster.kubeconfig), cluster)

    # -- waypoints ----------------------------------------------------------------------

    def add_waypoint(
        self,
        cluster: ClusterProvider,
        namespace: str,
        name: str,
        *,
        flavour: Flavour = FLAVOUR_TODAY,
        for_: str = "service",
        service_account: str | None = None,
    ) -> WaypointInfo:
        if flavour != FLAVOUR_TODAY:
            raise AdapterError(
                f"Istio no longer supports the {FLAVOUR_2022!r} waypoint flavour; "
                f"it speaks only {FLAVOUR_TODAY!r}"
            )
        if self.waypoint_via == "istioctl":
            argv = waypoint_apply_argv(
                namespace, name, for_, istioctl=self.istioctl(), kubeconfig=cluster.kubeconfig
            )
            self._exec(argv, cluster)
        else:
            gateway = waypoint_gateway(flavour, name, namespace, for_=for_)
            cluster.apply([gateway])
            cluster.wait(
                gateway["apiVersion"],
                "Gateway",
                name,
                gateway_condition("Programmed"),
                namespace=namespace,
                timeout=self.waypoint_timeout,
                description="condition Programmed=True",
            )
        return WaypointInfo(name, namespace, name, flavour)
