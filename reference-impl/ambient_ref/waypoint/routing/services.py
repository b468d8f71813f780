"""Services as routing sees them: which known Service a host name means, and its ports.

VirtualService hosts, VirtualService destinations and DestinationRule hosts all name a
Service by a (possibly short) DNS name, resolved relative to the object's namespace;
HTTPRoute ``sectionName`` and the destination port choice need a Service's port table.
Both questions are answered here, against the ``services`` mapping the caller passes.
"""

from __future__ import annotations

from collections.abc import Mapping

from .model import ServiceKey

DOMAIN_SUFFIX = "svc.cluster.local"


def _fqdn(service: ServiceKey) -> str:
    return f"{service[1]}.{service[0]}.{DOMAIN_SUFFIX}"


def resolve_host(
    host: str, namespace: str, services: Mapping[ServiceKey, object]
) -> ServiceKey | None:
    """The known Service a host names, read relative to ``namespace``, or ``None``.

    ``reviews`` is ``(namespace, reviews)``; ``reviews.ns``, ``reviews.ns.svc`` and
    ``reviews.ns.svc.cluster.local`` are qualified.  Any other name is external.
    """
    h = host.strip().rstrip(".").lower()
    for suffix in ("." + DOMAIN_SUFFIX, ".svc"):
        if h.endswith(suffix):
            h = h[: -len(suffix)]
            if h.count(".") != 1:
                return None
            break
    parts = h.split(".")
    if len(parts) == 1:
        key = (namespace, parts[0])
    elif len(parts) == 2:
        key = (parts[1], parts[0])
    else:
        return None
    return key if key in services else None


def _service_ports(obj: object) -> dict[int, str] | None:
    """Port number to port name of a Service object, or ``None`` if it does not say."""
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    ports = spec.get("ports") if isinstance(spec, Mapping) else None
    if not isinstance(ports, list):
        return None
    out: dict[int, str] = {}
    for p in ports:
        if isinstance(p, Mapping) and isinstance(p.get("port"), int):
            out[p["port"]] = str(p.get("name", ""))
    return out or None
