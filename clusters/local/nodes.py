"""Starting and stopping the node agents, from the control-plane process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .apiserver.server import ApiServer
from .images.catalog import PROJECT_ROOT
from .network import netns
from .network.topology import API_IP, API_PORT, ClusterNetwork
from .node.cgroups import node_root
from .node.hostpaths import unmount_under
from .node.podfiles import NODE_PROC
from .state import CGROUP_REGISTRY, KUBECONFIG


class ClusterNotReady(Exception):
    pass


def node_proc(state: Path, node: str) -> Path:
    """Where the procfs of a node's own PID namespace is mounted (``node/pidinit.py``):
    pids the node's agent records are read there."""
    return state / "nodes" / node / NODE_PROC


def node_host_root(state: Path, node: str) -> Path:
    """The folder standing for a node's ``/`` (the agent's ``<state-dir>/root``): its
    own etc/cni/net.d, opt/cni/bin, so what a node-level component installs there
    stays inside the cluster."""
    return state / "nodes" / node / "root"


class NodeAgents:
    def __init__(self, network: ClusterNetwork, state: Path,
                 image_executables: str | None = None) -> None:
        self.network = network
        self.state = state
        self.image_executables = image_executables
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        extra = (["--image-executables", self.image_executables]
                 if self.image_executables else [])
        for node in self.network.nodes:
            (self.state / "nodes" / node.name).mkdir(parents=True, exist_ok=True)
            log = open(self.state / f"{node.name}.log", "ab")  # noqa: SIM115
            try:
                proc = await asyncio.create_subprocess_exec(
                    # nsenter, not ip netns exec: the agent must stay in the host's mount
                    # namespace so the pod namespaces it mounts under /run/netns are
                    # visible to everyone (a node-level mesh component, exec).  pidinit
                    # gives the node a PID namespace of its own, with its init in the
                    # node's network namespace, and runs the agent under it.
                    "nsenter", f"--net={netns.NETNS_DIR / node.netns}", "--",
                    sys.executable, "-m", "clusters.local.node.pidinit",
                    "--proc", str(node_proc(self.state, node.name)), "--",
                    sys.executable, "-m", "clusters.local.node",
                    "--proc", str(node_proc(self.state, node.name)),
                    "--node", node.name, "--node-ip", node.ip, "--pod-cidr", node.pod_cidr,
                    "--kubeconfig", str(self.state / KUBECONFIG),
                    "--server", f"https://{API_IP}:{API_PORT}",
                    "--state-dir", str(self.state / "nodes" / node.name),
                    "--registry", str(self.network.registry), *extra,
                    "--cgroup-root", node_root(self.network.cluster, node.name),
                    "--cgroup-registry", str(self.state / CGROUP_REGISTRY),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env)
            finally:
                log.close()
            self.procs.append(proc)

    async def stop(self, grace: float = 20) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def exited(self) -> list[int]:
        return [p.returncode for p in self.procs if p.returncode is not None]


def _nodes_ready(server: ApiServer, names: list[str]) -> bool:
    return all(server.hooks.node_has_agent(n) for n in names)


def _dns_ready(server: ApiServer) -> bool:
    dep = server.store.get(("apps", "deployments"), "kube-system", "coredns")
    return bool(dep) and (dep.get("status") or {}).get("readyReplicas", 0) >= 1


async def wait_until_ready(server: ApiServer, nodes: list[str], timeout: float) -> None:
    """Until every node's agent reports Ready and cluster DNS serves, by watching the
    store (no polling); fails naming what is missing."""
    changed = asyncio.Event()

    def on_event(_: Any) -> None:
        changed.set()

    subs = [server.store.subscribe(("", "nodes"), callback=on_event),
            server.store.subscribe(("apps", "deployments"), callback=on_event)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while not (_nodes_ready(server, nodes) and _dns_ready(server)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                missing = [n for n in nodes if not server.hooks.node_has_agent(n)]
                what = (f"nodes not ready: {', '.join(missing)}" if missing
                        else "cluster DNS (kube-system/coredns) not ready")
                raise ClusterNotReady(
                    f"{what} after {timeout:g}s; see the node logs in {server.config.state_dir}")
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
    finally:
        for sub in subs:
            server.store.unsubscribe(sub)


def release_node_roots(state: Path) -> None:
    """Undo the mounts the node agents and inits made in the nodes' folders (each
    does at its shutdown; this is for ones that were killed): a pod's netns bound
    in a node's folder would otherwise keep that namespace alive, and a node's
    procfs (``node_proc``) its PID namespace."""
    unmount_under(state / "nodes")
