"""ClusterIP allocation from the service range (198.19.0.0/16 by default)."""

from __future__ import annotations

import ipaddress


class RangeFull(Exception):
    pass


class ClusterIPAllocator:
    """Hands out service VIPs; the first host is reserved for the ``kubernetes``
    Service and the tenth for ``kube-dns``, as on a kubeadm cluster."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.ip_network(cidr)
        self._taken: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._hosts = self.network.hosts()
        self._recycled: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []

    def reserved(self, index: int) -> str:
        return str(self.network.network_address + index)

    def contains(self, ip: str) -> bool:
        try:
            return ipaddress.ip_address(ip) in self.network
        except ValueError:
            return False

    def allocate(self, requested: str | None = None) -> str:
        if requested:
            addr = ipaddress.ip_address(requested)
            if addr in self._taken:
                raise ValueError(f"provided IP {requested} is already allocated")
            self._taken.add(addr)
            return requested
        while True:
            if self._recycled:
                addr = self._recycled.pop()
            else:
                addr = next(self._hosts, None)
                if addr is None:
                    raise RangeFull(f"no addresses left in the service range {self.network}")
            # .1 and .10 are only handed out when asked for by name
            if addr in self._taken or addr in (self.network.network_address + 1,
                                               self.network.network_address + 10):
                continue
            self._taken.add(addr)
            return str(addr)

    def release(self, ip: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        if addr in self._taken:
            self._taken.discard(addr)
            self._recycled.append(addr)
