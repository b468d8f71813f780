"""The mesh implementation adapter: the only way the suite acts on an implementation.

The suite never imports the implementation under test.  Everything it needs to do
*to* a mesh (install it, enroll a namespace, add a waypoint and bind workloads to
it) goes through a :class:`MeshAdapter`, and every adapter acts on the cluster only
through :class:`clusters.provider.ClusterProvider`.  Everything the suite *observes*
goes over the wire.  This keeps the suite honest: the same tests judge the
reference implementation, real Istio and a third party's mesh.

An adapter also states what the implementation claims (:meth:`MeshAdapter.features`)
and which waypoint API it speaks (:meth:`MeshAdapter.api_flavours`): tests needing
an unclaimed feature are skipped and reported as unsupported, never passed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from clusters.provider import ClusterProvider

# -- API flavours ----------------------------------------------------------------------

FLAVOUR_TODAY = "istio-waypoint"
"""Today's API: Gateway class ``istio-waypoint``, bound by the ``istio.io/use-waypoint`` label."""
FLAVOUR_2022 = "istio-mesh"
"""The 2022 preview: Gateway class ``istio-mesh`` + ``istio.io/service-account`` annotation."""
ALL_FLAVOURS: frozenset[str] = frozenset({FLAVOUR_TODAY, FLAVOUR_2022})

Flavour = Literal["istio-waypoint", "istio-mesh"]
BindKind = Literal["namespace", "service", "pod"]

DATAPLANE_MODE_LABEL = "istio.io/dataplane-mode"
AMBIENT_LABEL: Mapping[str, str] = {DATAPLANE_MODE_LABEL: "ambient"}
USE_WAYPOINT_LABEL = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE_LABEL = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR_LABEL = "istio.io/waypoint-for"
SERVICE_ACCOUNT_ANNOTATION = "istio.io/service-account"
WAYPOINT_FOR_VALUES = frozenset({"service", "workload", "all", "none"})

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# Today's waypoints use the GA Gateway API; the 2022 walkthrough used v1alpha2 and
# we keep it verbatim so the 2022 flavour is tested as published.
GATEWAY_API_VERSION = {
    FLAVOUR_TODAY: f"{GATEWAY_API_GROUP}/v1",
    FLAVOUR_2022: f"{GATEWAY_API_GROUP}/v1alpha2",
}

ROOT_NAMESPACE = "istio-system"
"""Istio's default ``meshConfig.rootNamespace`` (istio/istio pkg/config/mesh/mesh.go,
``DefaultMeshConfig``): AuthorizationPolicies there apply to the whole mesh."""

DEFAULT_METRICS: Mapping[str, str] = {
    "ztunnel": "15020/stats/prometheus",
    "waypoint": "15020/stats/prometheus",
}


# -- errors ----------------------------------------------------------------------------


class AdapterError(Exception):
    """An adapter operation failed; the message says what and, where possible, why."""


class AdapterUnavailable(AdapterError):
    """The adapter cannot run in this environment (missing tool, unsuitable cluster).

    Fixtures turn this into a skip with the message as reason: an implementation
    that cannot be installed here is *not run*, which is different from *failed*.
    """


class AdapterConfigError(AdapterError):
    """An adapter's configuration is invalid; the message names the file and field."""


# -- values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WaypointInfo:
    """A deployed waypoint: what to bind workloads to and where its proxy runs.

    ``deployment`` is what tests ``exec`` into (e.g. to read metrics); it differs
    from ``name`` in the 2022 flavour (``<service-account>-waypoint-proxy``).
    """

    name: str
    namespace: str
    deployment: str
    flavour: str = FLAVOUR_TODAY


def gateway_condition(condition_type: str) -> Any:
    """A predicate for ``ClusterProvider.wait``: the Gateway has ``condition_type=True``."""

    def check(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or ()
        return any(
            c.get("type") == condition_type and c.get("status") == "True" for c in conditions
        )

    return check


def waypoint_gateway(
    flavour: str,
    name: str,
    namespace: str,
    *,
    for_: str = "service",
    service_account: str | None = None,
) -> dict[str, Any]:
    """The Gateway that asks for a waypoint, in the shape each API flavour documents.

    Shared by the adapters that create waypoints by manifest, so both flavours are
    spelled once, exactly as the walkthrough and Istio's docs spell them.
    """
    if flavour == FLAVOUR_TODAY:
        if for_ not in WAYPOINT_FOR_VALUES:
            raise AdapterError(f"waypoint for={for_!r} is not one of {sorted(WAYPOINT_FOR_VALUES)}")
        return {
            "apiVersion": GATEWAY_API_VERSION[FLAVOUR_TODAY],
            "kind": "Gateway",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {WAYPOINT_FOR_LABEL: for_},
            },
            "spec": {
                "gatewayClassName": FLAVOUR_TODAY,
                "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
            },
        }
    if flavour == FLAVOUR_2022:
        if not service_account:
            raise AdapterError(
                "a 2022-flavour (istio-mesh) waypoint serves one service account: "
                "pass service_account="
            )
        return {
            "apiVersion": GATEWAY_API_VERSION[FLAVOUR_2022],
            "kind": "Gateway",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {SERVICE_ACCOUNT_ANNOTATION: service_account},
            },
            "spec": {"gatewayClassName": FLAVOUR_2022},
        }
    raise AdapterError(f"unknown waypoint API flavour {flavour!r}; known: {sorted(ALL_FLAVOURS)}")


def waypoint_deployment(flavour: str, name: str, service_account: str | None) -> str:
    """The waypoint's Deployment: the Gateway's name today, ``<sa>-waypoint-proxy`` in 2022."""
    if flavour == FLAVOUR_2022 and service_account:
        return f"{service_account}-waypoint-proxy"
    return name


# -- the adapter -------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateAuthority:
    """Where the mesh's CA takes certificate requests, for the suite to ask it itself."""

    url: str
    """Reached from inside a client pod (through its capture, like any workload's)."""
    protocol: str = "json-https"
    """``json-https``: the reference's (``POST`` of ``{"csr", "identity"}`` with the
    workload's service-account token as bearer; ``{"certChain": [...]}`` back).  The
    only protocol the suite speaks so far: Istio's is gRPC."""
    audience: str | None = None
    """The audience the CA requires of the token, if any (Istio: ``istio-ca``)."""


CA_PROTOCOLS = ("json-https",)


@dataclass(frozen=True)
class MeshComponents:
    """The mesh's own workloads, as the resilience tests find them."""

    namespace: str = "istio-system"
    control_plane: str = "istiod"
    """The control plane's Deployment."""
    node_proxy: str = "app=ztunnel"
    """A label selector for the node proxy's pods (one per node)."""
    cni_agent: str | None = "k8s-app=istio-cni-node"
    """A label selector for the CNI node agent's pods, None when there is none."""


class MeshAdapter(ABC):
    """How the suite installs, configures and locates one ambient implementation.

    Subclasses implement install/uninstall/version/add_waypoint and declare
    features and flavours; enrollment and waypoint binding are labels in every
    ambient implementation, so they have working defaults here.
    """

    name: str

    # -- identity and claims --------------------------------------------------------

    @abstractmethod
    def version(self) -> str:
        """The implementation's version, for the conformance report."""

    @abstractmethod
    def features(self) -> frozenset[str]:
        """The optional features the implementation claims (subset of ``ALL_FEATURES``)."""

    @abstractmethod
    def api_flavours(self) -> frozenset[str]:
        """The waypoint API flavours it speaks (subset of ``ALL_FLAVOURS``)."""

    def metrics_locations(self) -> dict[str, str]:
        """Where each component serves Prometheus metrics, as ``"<port>/<path>"``."""
        return dict(DEFAULT_METRICS)

    def root_namespace(self) -> str:
        """The mesh's root namespace: a policy there without a selector applies to every
        workload, and one with a selector to matching workloads of every namespace."""
        return ROOT_NAMESPACE

    def components(self) -> MeshComponents:
        """Where the mesh's own workloads run, for the resilience tests that delete or
        scale them; Istio's names by default (``istioctl install --set profile=ambient``)."""
        return MeshComponents()

    def certificate_authority(self) -> CertificateAuthority | None:
        """The CA the suite may ask for certificates as a workload would (the
        ``ca-identity-binding`` feature needs one); None when it cannot."""
        return None

    def configure(self, options: Mapping[str, Any]) -> None:
        """Adapter options from ``--adapter-config``; an adapter that takes none refuses
        any, naming them, rather than ignoring a typo."""
        if options:
            raise AdapterConfigError(f"adapter {self.name!r} takes no options, got: "
                                     f"{', '.join(sorted(options))}")

    def check_available(self, cluster: ClusterProvider) -> str | None:
        """Why this adapter cannot run against ``cluster`` here, or None if it can.

        Asked before ``install`` so an impossible run is a clear skip, not a
        confusing failure half-way through an install.
        """
        return None

    def unsupported_on(self, cluster: ClusterProvider) -> dict[str, str]:
        """Features this implementation claims in general but cannot deliver on
        ``cluster``, each with the reason (asked after ``check_available``).

        Their tests are skipped as unsupported with that reason, and the report names
        it, instead of failing on something the cluster lacks.
        """
        return {}

    # -- life cycle -------------------------------------------------------------------

    @abstractmethod
    def install(self, cluster: ClusterProvider) -> None:
        """Install the implementation and return once its components are ready."""

    @abstractmethod
    def uninstall(self, cluster: ClusterProvider) -> None:
        """Remove what ``install`` added; safe to call when not installed."""

    # -- enrollment ---------------------------------------------------------------------

    def enroll_labels(self) -> Mapping[str, str]:
        """The namespace labels that enroll a namespace in the mesh."""
        return AMBIENT_LABEL

    def enroll(self, cluster: ClusterProvider, namespace: str) -> None:
        """Put ``namespace``'s pods in the mesh (``istio.io/dataplane-mode=ambient``)."""
        pairs = [f"{k}={v}" for k, v in self.enroll_labels().items()]
        cluster.kubectl("label", "namespace", namespace, *pairs, "--overwrite")

    def unenroll(self, cluster: ClusterProvider, namespace: str) -> None:
        """Take ``namespace`` out of the mesh by removing the enrollment labels."""
        removals = [f"{k}-" for k in self.enroll_labels()]
        cluster.kubectl("label", "namespace", namespace, *removals)

    # -- waypoints ----------------------------------------------------------------------

    @abstractmethod
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
        """Deploy a waypoint and return once it is ready to serve."""

    def remove_waypoint(self, cluster: ClusterProvider, waypoint: WaypointInfo) -> None:
        """Delete a waypoint's Gateway (its Deployment is owned by it and follows)."""
        cluster.kubectl(
            "delete",
            f"gateways.{GATEWAY_API_GROUP}",
            waypoint.name,
            "-n",
            waypoint.namespace,
            "--ignore-not-found",
        )

    def use_waypoint(
        self,
        cluster: ClusterProvider,
        namespace: str,
        kind: BindKind,
        name: str,
        waypoint: WaypointInfo,
    ) -> None:
        """Send traffic for a namespace, Service or pod through ``waypoint``.

        Today's API binds with the ``istio.io/use-waypoint`` label (plus
        ``istio.io/use-waypoint-namespace`` across namespaces).  A 2022-flavour
        waypoint binds implicitly through its service account, so there is nothing
        to label and this is a no-op for it.
        """
        if waypoint.flavour == FLAVOUR_2022:
            return
        labels = [f"{USE_WAYPOINT_LABEL}={waypoint.name}"]
        target_ns = name if kind == "namespace" else namespace
        if waypoint.namespace != target_ns:
            labels.append(f"{USE_WAYPOINT_NAMESPACE_LABEL}={waypoint.namespace}")
        _label_bindable(cluster, "use_waypoint", namespace, kind, name, *labels, "--overwrite")

    def unuse_waypoint(self, cluster: ClusterProvider, namespace: str, kind: BindKind,
                       name: str) -> None:
        """Undo ``use_waypoint``: remove the binding labels (absent ones are no error),
        so the namespace, Service or pod is served by ztunnel alone again."""
        _label_bindable(cluster, "unuse_waypoint", namespace, kind, name,
                        f"{USE_WAYPOINT_LABEL}-", f"{USE_WAYPOINT_NAMESPACE_LABEL}-")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _label_bindable(cluster: ClusterProvider, verb: str, namespace: str, kind: str,
                    name: str, *args: str) -> None:
    """``kubectl label`` on what a waypoint binds: a namespace, or a Service or pod of
    ``namespace``; ``verb`` names the caller in the error for any other kind."""
    if kind not in ("namespace", "service", "pod"):
        raise AdapterError(f"{verb} kind must be namespace, service or pod, not {kind!r}")
    if kind == "namespace":
        cluster.kubectl("label", "namespace", name, *args)
    else:
        cluster.kubectl("label", kind, name, "-n", namespace, *args)
