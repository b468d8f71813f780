"""What the ztunnel knows, indexed for the data path: workloads by address, services
by VIP and port, and the compiled authorization policies.

Rebuilt from the configuration stream's state on every change (a few thousand
objects at most), so lookups on each connection are dictionary reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..policy.evaluate import PolicyIndex
from ..policy.model import Authorization
from ..xds.types import Service, Workload


@dataclass(frozen=True)
class Destination:
    """Where an outbound connection goes, decided from its original destination."""

    ip: str
    port: int
    workload: Workload | None  # None: not known to the mesh (plain passthrough)
    service: Service | None  # the Service whose VIP was dialled, if any


class MeshState:
    def __init__(self, root_namespace: str = "istio-system") -> None:
        self.root_namespace = root_namespace
        self.workloads: dict[str, Workload] = {}
        self.by_ip: dict[str, Workload] = {}
        self.by_vip: dict[tuple[str, int], Service] = {}
        self.endpoints: dict[str, list[Workload]] = {}  # service key -> its workloads
        self.policies = PolicyIndex([], root_namespace)
        self.version = 0

    def update(self, workloads: dict[str, Workload], services: dict[str, Service],
               authorizations: dict[str, dict[str, Any]]) -> None:
        self.workloads = dict(workloads)
        self.by_ip = {}
        self.endpoints = {}
        for w in workloads.values():
            if w.network_mode == "HOST_NETWORK":
                continue  # a node address names no single workload
            for ip in w.addresses:
                self.by_ip[ip] = w
            for key in w.services:
                self.endpoints.setdefault(key, []).append(w)
        self.by_vip = {}
        for key, svc in services.items():
            for vip in svc.vips:
                for port in svc.ports:
                    self.by_vip[(vip, port.service_port)] = svc
            self.endpoints.setdefault(key, [])
        parsed = []
        for data in authorizations.values():
            try:
                parsed.append(Authorization.from_dict(data))
            except ValueError:
                continue  # the control plane reports malformed policies in their status
        self.policies = PolicyIndex(parsed, self.root_namespace)
        self.version += 1

    def waypoint_address(self, ref: dict[str, Any]) -> str | None:
        """A ready pod of the waypoint a service or workload uses (None: not running)."""
        key = f"{ref.get('namespace')}/{ref.get('hostname')}"
        ready = [w for w in self.endpoints.get(key, []) if w.healthy and w.addresses]
        return random.choice(ready).addresses[0] if ready else None

    def destination(self, ip: str, port: int) -> Destination:
        """Resolve an original destination: a Service VIP becomes one of its healthy
        endpoints (chosen at random per connection, as kube-proxy does), a pod IP its
        workload, anything else stays as it is."""
        svc = self.by_vip.get((ip, port))
        if svc is not None:
            key = f"{svc.namespace}/{svc.hostname}"
            candidates = []
            for w in self.endpoints.get(key, []):
                if not w.healthy or not w.addresses:
                    continue
                for mapping in w.services.get(key, []):
                    if mapping.service_port == port:
                        candidates.append((w, mapping.target_port))
            if not candidates:
                return Destination(ip, port, None, svc)
            workload, target = random.choice(candidates)
            return Destination(workload.addresses[0], target, workload, svc)
        return Destination(ip, port, self.by_ip.get(ip), None)
