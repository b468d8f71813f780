"""The local cluster's control-plane process: ``python -m clusters.local.daemon``.

Started by the local provider (or ``python -m clusters.local up``), never by hand.
It serves the API until SIGTERM/SIGINT, and reports readiness on a pipe so the
starter waits for exactly that moment instead of polling.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import yaml

from .apiserver.server import ApiServer, PortInUse, ServerConfig
from .network import netns
from .network.topology import API_IP, API_PORT, ClusterNetwork
from .node.cgroups import remove_recorded
from .nodes import ClusterNotReady, NodeAgents, release_node_roots, wait_until_ready
from .state import CGROUP_REGISTRY, KUBECONFIG, PID_FILE, READY_FILE

PR_SET_PDEATHSIG = 1


def write_kubeconfig(path: Path, name: str, server: ApiServer) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server.url,
            "certificate-authority-data": base64.b64encode(server.ca.cert).decode()}}],
        "users": [{"name": f"{name}-admin", "user": {"token": server.admin_token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    tmp.replace(path)


def _die_with_parent() -> None:
    """Ask the kernel to SIGTERM us when the starting process dies (tests: a killed
    pytest must not leave a cluster behind)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGTERM)


async def run(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    nodes = [f"node-{i + 1}" for i in range(args.nodes)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    network: ClusterNetwork | None = None
    agents: NodeAgents | None = None
    config = ServerConfig(host=args.host, port=args.port, nodes=nodes,
                          service_cidr=args.service_cidr, state_dir=state)
    try:
        if args.run_pods:
            network = ClusterNetwork(args.name, args.nodes, state)
            network.create()
            with netns.entered(network.wire):
                sock = socket.create_server((API_IP, API_PORT))
            config.extra_sockets.append(sock)
            config.endpoint = (API_IP, API_PORT)
            config.dns = True
            config.cluster_name = args.name
        server = ApiServer(config)
        await server.start()
    except (PortInUse, netns.NetworkError, OSError) as exc:
        _report(args.ready_fd, {"error": str(exc)})
        if network is not None:
            network.destroy()
        return 2
    write_kubeconfig(state / KUBECONFIG, args.name, server)
    try:
        if network is not None:
            agents = NodeAgents(network, state, args.image_executables)
            await agents.start()
            await wait_until_ready(server, nodes, timeout=args.start_timeout)
    except (ClusterNotReady, OSError, netns.NetworkError) as exc:
        _report(args.ready_fd, {"error": str(exc)})
        await _shutdown(server, agents, network, state)
        return 2
    (state / READY_FILE).write_text(server.url + "\n")
    _report(args.ready_fd, {"url": server.url, "kubeconfig": str(state / KUBECONFIG)})
    await stop.wait()
    await _shutdown(server, agents, network, state)
    if not os.environ.get("AMBIENT_HARNESS_KEEP_STATE"):
        # A stop asked for (or the owner's death): nothing of this cluster remains.
        shutil.rmtree(state, ignore_errors=True)
    return 0


async def _shutdown(server: ApiServer, agents: NodeAgents | None,
                    network: ClusterNetwork | None, state: Path) -> None:
    if agents is not None:
        await agents.stop()
    # What an agent killed before it could clean up left behind.
    await asyncio.to_thread(remove_recorded, state / CGROUP_REGISTRY)
    await server.stop()
    release_node_roots(state)  # before the namespaces: a bind there keeps one alive
    if network is not None:
        network.destroy()


def _report(fd: int | None, message: dict[str, str]) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clusters.local.daemon")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--service-cidr", default="198.19.0.0/16")
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--die-with-parent", action="store_true")
    parser.add_argument("--run-pods", action="store_true",
                        help="create the network and node agents (needs root)")
    parser.add_argument("--start-timeout", type=float, default=60)
    parser.add_argument("--image-executables", default=None,
                        help="JSON file of images mapped to executables, for the node agents")
    args = parser.parse_args(argv)
    if args.die_with_parent:
        _die_with_parent()
    state = Path(args.state_dir)
    (state / PID_FILE).write_text(f"{os.getpid()}\n")
    logging.basicConfig(level=os.environ.get("AMBIENT_HARNESS_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
