"""The resources the control plane pushes to ztunnels: workloads, services, authorizations.

They mirror Istio's workload API (``istio.workload.Workload`` and
``istio.workload.Service``, see istio/ztunnel proto/workload.proto and
proto/authorization.proto), reduced to what this reference ztunnel uses, in plain JSON.
Field names are upstream's, in snake case, so a reader who knows the proto recognises
them.

Each dataclass converts to and from the JSON dict that travels on the wire.  ``from_dict``
validates, because a ztunnel must reject (NACK) a malformed resource rather than act on half
of one; a ``ValueError`` says which field was wrong.

Authorization resources are not modelled here: another module owns their shape, and the
protocol carries them as opaque JSON objects keyed ``"namespace/name"``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

WORKLOAD = "workload"
SERVICE = "service"
AUTHORIZATION = "authorization"
#: Every resource type, in the order a snapshot lists them.
RESOURCE_TYPES: tuple[str, ...] = (WORKLOAD, SERVICE, AUTHORIZATION)

#: How traffic reaches a workload: ``HBONE`` (enrolled in the mesh, mTLS tunnel to port
#: 15008) or ``TCP`` (not enrolled: plain TCP passthrough).  Upstream calls the latter
#: ``NONE``; "TCP" says what is actually sent.
Protocol = Literal["HBONE", "TCP"]
PROTOCOLS: tuple[str, ...] = ("HBONE", "TCP")

#: Upstream's ``NetworkMode``: a host-network pod shares its node's IP with every other
#: host-network pod there, so a ztunnel must not look it up by address.
NetworkMode = Literal["STANDARD", "HOST_NETWORK"]
NETWORK_MODES: tuple[str, ...] = ("STANDARD", "HOST_NETWORK")


@dataclass
class PortMapping:
    """One port of a Service as one workload serves it (upstream ``Port`` in a ``PortList``)."""

    service_port: int
    target_port: int

    def to_dict(self) -> dict[str, Any]:
        return {"service_port": self.service_port, "target_port": self.target_port}

    @classmethod
    def from_dict(cls, data: Any) -> PortMapping:
        d = _mapping(data, "port mapping")
        return cls(
            service_port=_port(d.get("service_port"), "service_port"),
            target_port=_port(d.get("target_port"), "target_port"),
        )


@dataclass
class ServicePort:
    """One port of a Service.

    ``target_port`` is 0 when the Service names its target port and the selected pods do
    not agree on a number: the number is then per workload, in ``Workload.services``
    (upstream does the same).
    """

    name: str
    service_port: int
    target_port: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service_port": self.service_port,
            "target_port": self.target_port,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ServicePort:
        d = _mapping(data, "service port")
        return cls(
            name=_str(d.get("name", ""), "name"),
            service_port=_port(d.get("service_port"), "service_port"),
            target_port=_port(d.get("target_port", 0), "target_port", allow_zero=True),
        )


@dataclass
class Workload:
    """A pod as ztunnel sees it (key: ``uid``).

    ``protocol`` decides how peers reach it; ``service_account``, ``namespace`` and
    ``trust_domain`` make its SPIFFE identity; the telemetry labels (``app``, ``version``,
    ``canonical_name``, ``canonical_revision``, ``workload_name``) fill metric labels and
    baggage; ``services`` maps each selecting Service (``"ns/hostname"``) to the ports this
    pod serves it on.  ``healthy`` follows the pod's Ready condition: a ztunnel sends
    Service traffic only to healthy workloads.  ``waypoint`` is reserved for waypoints.
    """

    uid: str
    name: str
    namespace: str
    addresses: list[str] = field(default_factory=list)
    node: str = ""
    service_account: str = "default"
    trust_domain: str = "cluster.local"
    protocol: Protocol = "TCP"
    network_mode: NetworkMode = "STANDARD"
    healthy: bool = True
    app: str = ""
    version: str = ""
    canonical_name: str = ""
    canonical_revision: str = ""
    workload_name: str = ""
    services: dict[str, list[PortMapping]] = field(default_factory=dict)
    waypoint: dict[str, Any] | None = None
    # The pod's labels: a ztunnel matches selector-scoped policies against them.
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The SPIFFE identity its certificate carries (``spiffe://td/ns/<ns>/sa/<sa>``)."""
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "name": self.name,
            "namespace": self.namespace,
            "addresses": list(self.addresses),
            "node": self.node,
            "service_account": self.service_account,
            "trust_domain": self.trust_domain,
            "protocol": self.protocol,
            "network_mode": self.network_mode,
            "healthy": self.healthy,
            "app": self.app,
            "version": self.version,
            "canonical_name": self.canonical_name,
            "canonical_revision": self.canonical_revision,
            "workload_name": self.workload_name,
            "services": {
                key: [p.to_dict() for p in ports] for key, ports in sorted(self.services.items())
            },
            "waypoint": self.waypoint,
            "labels": dict(sorted(self.labels.items())),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Workload:
        d = _mapping(data, "workload")
        protocol = d.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            raise ValueError(f"workload protocol must be one of {PROTOCOLS}, not {protocol!r}")
        network_mode = d.get("network_mode", "STANDARD")
        if network_mode not in NETWORK_MODES:
            raise ValueError(
                f"workload network_mode must be one of {NETWORK_MODES}, not {network_mode!r}"
            )
        services_in = _mapping(d.get("services", {}), "workload services")
        services: dict[str, list[PortMapping]] = {}
        for key, ports in services_in.items():
            _service_key(key)
            if not isinstance(ports, list):
                raise ValueError(f"workload services[{key!r}] must be a list of port mappings")
            services[key] = [PortMapping.from_dict(p) for p in ports]
        healthy = d.get("healthy", True)
        if not isinstance(healthy, bool):
            raise ValueError("workload healthy must be a boolean")
        return cls(
            uid=_nonempty(d.get("uid"), "workload uid"),
            name=_nonempty(d.get("name"), "workload name"),
            namespace=_nonempty(d.get("namespace"), "workload namespace"),
            addresses=_ips(d.get("addresses", []), "workload addresses"),
            node=_str(d.get("node", ""), "workload node"),
            service_account=_nonempty(d.get("service_account", "default"), "service_account"),
            trust_domain=_nonempty(d.get("trust_domain", "cluster.local"), "trust_domain"),
            protocol=protocol,
            network_mode=network_mode,
            healthy=healthy,
            app=_str(d.get("app", ""), "app"),
            version=_str(d.get("version", ""), "version"),
            canonical_name=_str(d.get("canonical_name", ""), "canonical_name"),
            canonical_revision=_str(d.get("canonical_revision", ""), "canonical_revision"),
            workload_name=_str(d.get("workload_name", ""), "workload_name"),
            services=services,
            waypoint=_optional_mapping(d.get("waypoint"), "workload waypoint"),
            labels=_labels_of(d.get("labels", {})),
        )


def _labels_of(data: Any) -> dict[str, str]:
    labels = _mapping(data, "workload labels")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise ValueError("workload labels must map strings to strings")
    return dict(labels)


@dataclass
class Service:
    """A Kubernetes Service as ztunnel sees it (key: ``"namespace/hostname"``).

    ``vips`` are the addresses a client dials (cluster IPs, external and load-balancer IPs;
    empty for a headless Service); ``subject_alt_names`` are extra identities a server
    behind the Service may present.  ``waypoint`` is reserved for waypoints.
    """

    name: str
    namespace: str
    hostname: str
    vips: list[str] = field(default_factory=list)
    ports: list[ServicePort] = field(default_factory=list)
    subject_alt_names: list[str] = field(default_factory=list)
    waypoint: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """``"namespace/hostname"``: the key of this Service in every map."""
        return f"{self.namespace}/{self.hostname}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "hostname": self.hostname,
            "vips": list(self.vips),
            "ports": [p.to_dict() for p in self.ports],
            "subject_alt_names": list(self.subject_alt_names),
            "waypoint": self.waypoint,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Service:
        d = _mapping(data, "service")
        ports = d.get("ports", [])
        if not isinstance(ports, list):
            raise ValueError("service ports must be a list")
        sans = d.get("subject_alt_names", [])
        if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
            raise ValueError("service subject_alt_names must be a list of strings")
        return cls(
            name=_nonempty(d.get("name"), "service name"),
            namespace=_nonempty(d.get("namespace"), "service namespace"),
            hostname=_nonempty(d.get("hostname"), "service hostname"),
            vips=_ips(d.get("vips", []), "service vips"),
            ports=[ServicePort.from_dict(p) for p in ports],
            subject_alt_names=list(sans),
            waypoint=_optional_mapping(d.get("waypoint"), "service waypoint"),
        )


def service_hostname(name: str, namespace: str, domain: str = "cluster.local") -> str:
    """The DNS name of a Service, the way Kubernetes and ztunnel spell it."""
    return f"{name}.{namespace}.svc.{domain}"


def service_key(namespace: str, hostname: str) -> str:
    """``"namespace/hostname"``, the key of a Service (and of ``Workload.services``)."""
    return f"{namespace}/{hostname}"


def decode_resource(rtype: str, data: Any) -> Workload | Service | dict[str, Any]:
    """The typed form of one resource of ``rtype`` (authorizations stay dicts).

    Raises ``ValueError`` for an unknown type or a malformed resource.
    """
    if rtype == WORKLOAD:
        return Workload.from_dict(data)
    if rtype == SERVICE:
        return Service.from_dict(data)
    if rtype == AUTHORIZATION:
        return dict(_mapping(data, "authorization"))
    raise ValueError(f"unknown resource type {rtype!r}; known: {', '.join(RESOURCE_TYPES)}")


def encode_resource(resource: Any) -> dict[str, Any]:
    """The JSON dict of a resource: ``to_dict()`` of a dataclass, a copy of a dict."""
    if hasattr(resource, "to_dict"):
        return resource.to_dict()
    if isinstance(resource, Mapping):
        return dict(resource)
    raise TypeError(f"not a resource: {type(resource).__name__}")


# -- validation helpers ---------------------------------------------------------------------


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _optional_mapping(value: Any, what: str) -> dict[str, Any] | None:
    return None if value is None else dict(_mapping(value, what))


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _nonempty(value: Any, what: str) -> str:
    if not _str(value, what):
        raise ValueError(f"{what} must not be empty")
    return value


def _port(value: Any, what: str, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise ValueError(f"{what} must be an integer in {low}..65535, not {value!r}")
    return value


def _ips(value: Any, what: str) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of IP addresses")
    for ip in value:
        try:
            ipaddress.ip_address(ip)
        except (ValueError, TypeError):
            raise ValueError(f"{what}: {ip!r} is not an IP address") from None
    return list(value)


def _service_key(key: Any) -> str:
    if not isinstance(key, str) or key.count("/") != 1 or not all(key.split("/")):
        raise ValueError(f"service key must be 'namespace/hostname', not {key!r}")
    return key
