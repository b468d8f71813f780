"""A pod's network sandbox: its namespace, address and routed link; its DNS files.

The node keeps the gateway address (the first of its /24) on every pod link, so a
pod's default route points at its node without a bridge; the node routes each pod
address to its link.  Inside the pod namespace only ``lo`` and ``eth0`` exist: the
rest of the namespace (iptables, extra listeners) belongs to the mesh, as on a
real node.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..network import netns
from ..network.topology import pod_netns

CLUSTER_DOMAIN = "cluster.local"


class IPAM:
    """Pod addresses of one node's /24: .1 is the node's gateway, .2-.254 for pods."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr)
        self.gateway = str(net.network_address + 1)
        self._free = [str(a) for a in list(net.hosts())[1:]]
        self._used: set[str] = set()

    def allocate(self) -> str:
        for ip in self._free:
            if ip not in self._used:
                self._used.add(ip)
                return ip
        raise RuntimeError("no pod addresses left on this node")

    def release(self, ip: str) -> None:
        self._used.discard(ip)


@dataclass
class Sandbox:
    uid: str
    netns: str
    ip: str
    link: str  # the node side of the pod's veth

    @property
    def path(self) -> Path:
        return netns.NETNS_DIR / self.netns

    @property
    def mac(self) -> str:
        return link_mac(self.ip, pod_side=True)

    @property
    def host_mac(self) -> str:
        return link_mac(self.ip, pod_side=False)


def link_mac(ip: str, pod_side: bool) -> str:
    """Fixed, locally administered addresses for the two ends of a pod's veth (so the
    sandbox's CNI result can name them without asking the kernel)."""
    octets = ipaddress.ip_address(ip).packed
    return ":".join(f"{b:02x}" for b in (0x0A if pod_side else 0x0E, 0x58, *octets))


def dns_config(namespace: str, dns_ip: str) -> dict[str, list[str]]:
    """A ClusterFirst pod's resolver settings, as kubelet makes them."""
    return {"nameservers": [dns_ip],
            "search": [f"{namespace}.svc.{CLUSTER_DOMAIN}", f"svc.{CLUSTER_DOMAIN}",
                       CLUSTER_DOMAIN],
            "options": ["ndots:5"]}


def resolv_conf(namespace: str, dns_ip: str) -> str:
    dns = dns_config(namespace, dns_ip)
    return (f"nameserver {dns['nameservers'][0]}\n"
            f"search {' '.join(dns['search'])}\n"
            f"options {' '.join(dns['options'])}\n")


def hosts_file(ip: str, pod_name: str) -> str:
    return (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{ip}\t{pod_name}\n")


async def create(uid: str, ipam: IPAM, record: Callable[[str], None]) -> Sandbox:
    """The namespace ``/run/netns/pod-<uid>`` with ``lo`` and a routed ``eth0``."""
    name = pod_netns(uid)
    link = "v" + uid.replace("-", "")[:12]
    ip = ipam.allocate()
    record(name)  # before it exists: a crash from here on leaves a name to clean up
    try:
        await netns.arun(["ip", "netns", "add", name])
        await netns.arun(netns.batch_argv(None), "\n".join([
            f"link add {link} address {link_mac(ip, False)} type veth "
            f"peer name eth0 address {link_mac(ip, True)} netns {name}",
            f"addr add {ipam.gateway}/32 dev {link}",
            f"link set {link} up",
            f"route add {ip}/32 dev {link}",
        ]) + "\n")
        await netns.arun(netns.batch_argv(name), "\n".join([
            "link set lo up",
            f"addr add {ip}/32 dev eth0",
            "link set eth0 up",
            f"route add {ipam.gateway} dev eth0 scope link",
            f"route add default via {ipam.gateway} dev eth0",
        ]) + "\n")
    except Exception:
        await destroy(Sandbox(uid, name, ip, link), ipam)
        raise
    return Sandbox(uid, name, ip, link)


async def destroy(sandbox: Sandbox, ipam: IPAM) -> None:
    """Remove the namespace (its veth goes with it) and the route."""
    if netns.exists(sandbox.netns):
        netns.kill_processes_in(sandbox.netns)
        try:
            await netns.arun(["ip", "netns", "del", sandbox.netns])
        except netns.NetworkError:
            if netns.exists(sandbox.netns):
                raise
    netns.delete(sandbox.netns)
    ipam.release(sandbox.ip)
