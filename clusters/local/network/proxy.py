"""Service VIPs in a node's namespace: the kube-proxy role, with nftables.

Traffic a pod sends to a ClusterIP leaves the pod's namespace unchanged (the pod
namespace belongs to the mesh) and is DNATed here, in the node, to one ready
endpoint chosen at random per connection.  A pod reaching itself through its own
Service is masqueraded (hairpin), and a Service with no ready endpoint rejects at
once, as with kube-proxy, instead of letting connections time out.

``render`` is pure (objects in, ruleset text out); ``ServiceProxy`` feeds it from
informers and loads the result atomically with ``nft -f``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from clusters.background import BackgroundTask

from . import netns

log = logging.getLogger("proxy")

TABLE = "ah_proxy"
HAIRPIN_MARK = "0x4000"


def _id(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:12]


def _ready_endpoints(slices: list[dict[str, Any]], port_name: str,
                     protocol: str) -> list[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for s in slices:
        port = next((p for p in s.get("ports") or () if (p.get("name") or "") == port_name
                     and p.get("protocol", "TCP") == protocol), None)
        if port is None or not isinstance(port.get("port"), int):
            continue
        for ep in s.get("endpoints") or ():
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for addr in ep.get("addresses") or ():
                out.add((addr, port["port"]))
    return sorted(out)


def render(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> str:
    """The nftables ruleset for these Services and EndpointSlices."""
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for s in slices:
        svc = (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if svc:
            by_service.setdefault((s["metadata"]["namespace"], svc), []).append(s)
    dispatch: list[str] = []
    chains: list[str] = []
    no_endpoints: list[str] = []
    for svc in sorted(services, key=lambda o: (o["metadata"]["namespace"],
                                               o["metadata"]["name"])):
        spec = svc.get("spec") or {}
        vip = spec.get("clusterIP")
        if not vip or vip == "None" or spec.get("type") == "ExternalName":
            continue
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        for port in spec.get("ports") or ():
            proto = port.get("protocol", "TCP")
            if proto not in ("TCP", "UDP"):
                continue
            l4 = proto.lower()
            endpoints = _ready_endpoints(by_service.get(key, []), port.get("name") or "", proto)
            if not endpoints:
                no_endpoints.append(f"{vip} . {l4} . {port['port']}")
                continue
            chain = f"svc_{_id(*key, port['port'], proto)}"
            dispatch.append(f"    ip daddr {vip} {l4} dport {port['port']} jump {chain}")
            seps = []
            for ip, target in endpoints:
                sep = f"sep_{_id(*key, port['port'], proto, ip, target)}"
                seps.append(sep)
                chains.append(
                    f"  chain {sep} {{\n"
                    f"    ip saddr {ip} meta mark set meta mark | {HAIRPIN_MARK}\n"
                    f"    meta l4proto {l4} dnat to {ip}:{target}\n  }}")
            if len(seps) == 1:
                body = f"    jump {seps[0]}"
            else:
                choices = ", ".join(f"{i} : jump {sep}" for i, sep in enumerate(seps))
                body = f"    numgen random mod {len(seps)} vmap {{ {choices} }}"
            chains.append(f"  chain {chain} {{\n{body}\n  }}")
    lines = [
        f"table ip {TABLE}",
        f"delete table ip {TABLE}",
        f"table ip {TABLE} {{",
        "  chain nat_prerouting {",
        "    type nat hook prerouting priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain nat_output {",
        "    type nat hook output priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain nat_postrouting {",
        "    type nat hook postrouting priority 100; policy accept;",
        f"    meta mark & {HAIRPIN_MARK} == {HAIRPIN_MARK} masquerade",
        "  }",
        "  chain services {",
        *dispatch,
        "  }",
        *chains,
        "  set no_endpoints {",
        "    type ipv4_addr . inet_proto . inet_service",
    ]
    if no_endpoints:
        lines.append(f"    elements = {{ {', '.join(no_endpoints)} }}")
    lines += [
        "  }",
        "  chain filter_forward {",
        "    type filter hook forward priority 0; policy accept;",
        "    ip daddr . meta l4proto . th dport @no_endpoints reject",
        "  }",
        "  chain filter_output {",
        "    type filter hook output priority 0; policy accept;",
        "    ip daddr . meta l4proto . th dport @no_endpoints reject",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


class ServiceProxy:
    """Keeps this namespace's rules equal to ``render`` of the current objects."""

    def __init__(self, services: Any, slices: Any) -> None:
        self.services = services  # Informer of /api/v1/services
        self.slices = slices  # Informer of EndpointSlices
        self._dirty = asyncio.Event()
        self._applied = ""
        self.synced = asyncio.Event()
        self._background = BackgroundTask(self._run, "service-proxy")

    def changed(self, *_: object) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        await self.services.synced.wait()
        await self.slices.synced.wait()
        self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            ruleset = render(list(self.services.items.values()), list(self.slices.items.values()))
            if ruleset != self._applied:
                try:
                    await netns.arun(["nft", "-f", "-"], ruleset)
                    self._applied = ruleset
                except netns.NetworkError as exc:
                    log.error("service rules not applied: %s", exc)
            self.synced.set()
