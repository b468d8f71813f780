"""The local cluster's network: one "wire" namespace and one namespace per node.

    wire namespace  ah-<cluster>      bridge br0 198.18.255.254/24; the API listens here
       |  veth per node (n<i> on the bridge, eth0 in the node)
    node namespace  ah-<cluster>-n<i> eth0 198.18.255.<i>/24; pods of 198.18.<i-1>.0/24
       |  veth per pod (v<uid> in the node, eth0 in the pod), routed, no bridge
    pod namespace   pod-<uid>         eth0 198.18.<i-1>.<k>/32, default via 198.18.<i-1>.1

Addresses come from 198.18.0.0/15 (reserved for benchmarking): pods 198.18.0.0/16,
a /24 per node; node addresses in 198.18.255.0/24; services 198.19.0.0/16.  Nodes
route each other's pod ranges over the bridge; anything else goes to the wire
namespace, which forwards nothing, so no packet can leave the cluster.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from . import netns

NODE_NET = ipaddress.ip_network("198.18.255.0/24")
API_IP = "198.18.255.254"
API_PORT = 6443
POD_NET = ipaddress.ip_network("198.18.0.0/16")
# Every namespace name the project makes starts with one of these, so a cleanup
# can find what a run killed before it could record anything.
PREFIXES = ("ah-", "pod-")


@dataclass(frozen=True)
class NodeAddress:
    index: int  # 1-based
    name: str
    netns: str
    ip: str
    pod_cidr: str

    @property
    def pod_gateway(self) -> str:
        return str(ipaddress.ip_network(self.pod_cidr).network_address + 1)


def wire_netns(cluster: str) -> str:
    return f"ah-{cluster}"


def node_addresses(cluster: str, count: int) -> list[NodeAddress]:
    if count > 250:
        raise ValueError("at most 250 nodes (one /24 of pod addresses each)")
    return [NodeAddress(i, f"node-{i}", node_netns(cluster, f"node-{i}"),
                        str(NODE_NET.network_address + i),
                        f"198.18.{i - 1}.0/24") for i in range(1, count + 1)]


def node_netns(cluster: str, node: str) -> str:
    return f"ah-{cluster}-n{node.rsplit('-', 1)[-1]}"


def pod_netns(uid: str) -> str:
    """The name a pod's namespace has under /run/netns: the contract by which a
    node-level mesh component finds a pod's network (see README)."""
    return f"pod-{uid}"


class ClusterNetwork:
    """Creates and removes the wire and node namespaces; records every name first."""

    def __init__(self, cluster: str, nodes: int, state_dir: Path) -> None:
        self.cluster = cluster
        self.wire = wire_netns(cluster)
        self.nodes = node_addresses(cluster, nodes)
        self.registry = state_dir / "netns"

    def record(self, name: str) -> None:
        with open(self.registry, "a") as f:
            f.write(name + "\n")

    def create(self) -> None:
        netns.require_tools()
        if netns.exists(self.wire):
            # Network namespace names are machine-wide: refuse rather than share.
            raise netns.NetworkError(
                f"network namespace {self.wire} already exists: another local cluster named "
                f"{self.cluster!r} is running on this machine (or a killed one left it). "
                "Use another name, or 'python -m clusters.local cleanup' for leftovers")
        self.record(self.wire)
        netns.add(self.wire)
        wire_cmds = [
            "link add br0 type bridge",
            f"addr add {API_IP}/{NODE_NET.prefixlen} dev br0",
            "link set br0 up",
        ]
        for node in self.nodes:
            self.record(node.netns)
            netns.add(node.netns)
            wire_cmds += [
                f"link add n{node.index} type veth peer name eth0 netns {node.netns}",
                f"link set n{node.index} master br0",
                f"link set n{node.index} up",
                f"route add {node.pod_cidr} via {node.ip}",
            ]
        netns.run(netns.batch_argv(self.wire), "\n".join(wire_cmds) + "\n")
        netns.run(netns.exec_argv(self.wire, ["sh", "-c", netns.sysctl_script({
            "net.ipv4.ip_forward": "0"})]))
        for node in self.nodes:
            cmds = [
                f"addr add {node.ip}/{NODE_NET.prefixlen} dev eth0",
                "link set eth0 up",
                f"route add default via {API_IP}",
            ]
            cmds += [f"route add {other.pod_cidr} via {other.ip}"
                     for other in self.nodes if other is not node]
            netns.run(netns.batch_argv(node.netns), "\n".join(cmds) + "\n")
            netns.run(netns.exec_argv(node.netns, ["sh", "-c", netns.sysctl_script({
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.rp_filter": "0",
                "net.ipv4.conf.default.rp_filter": "0",
                # ztunnel-style components bind to non-local addresses in the node.
                "net.ipv4.ip_nonlocal_bind": "1",
            })]))

    def destroy(self) -> list[str]:
        """Remove every namespace this cluster recorded (pods' too); returns their names."""
        return destroy_recorded(self.registry)


def destroy_recorded(registry: Path) -> list[str]:
    try:
        names = [n for n in registry.read_text().split() if n]
    except OSError:
        names = []
    removed = []
    # Pods first, then nodes, then the wire: links die with their namespaces.
    for name in sorted(set(names), key=lambda n: (not n.startswith("pod-"), n.count("-"), n),
                       reverse=False):
        if netns.exists(name) or (netns.ETC_NETNS / name).exists():
            netns.delete(name)
            removed.append(name)
    return removed
