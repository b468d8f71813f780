"""The node agent's command line: ``python -m clusters.local.node``.

``nodes.py`` starts one per node, under the node's init (``pidinit.py``), inside
the node's network namespace.  This module reads the arguments and the
kubeconfig, sets up logging, dies with its parent, and runs the agent
(``agent.NodeAgent``) until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path

from ..images import executables
from ..kubeclient import KubeClient
from .agent import NodeAgent
from .cgroups import CgroupTree


async def amain(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = KubeClient.from_kubeconfig(args.kubeconfig, server=args.server)
    ca = base64.b64decode(__import__("yaml").safe_load(Path(args.kubeconfig).read_text())
                          ["clusters"][0]["cluster"]["certificate-authority-data"])
    mapped = executables.load(Path(args.image_executables)) if args.image_executables else []
    cgroups = (CgroupTree.find(args.cgroup_root, Path(args.cgroup_registry))
               if args.cgroup_root and args.cgroup_registry else None)
    agent = NodeAgent(args.node, args.node_ip, args.pod_cidr, client, Path(args.state_dir),
                      ca, Path(args.registry), mapped, cgroups=cgroups, proc=args.proc)
    await agent.run(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clusters.local.node")
    parser.add_argument("--node", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--pod-cidr", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--image-executables", default=None,
                        help="JSON file of images mapped to executables (images/executables.py)")
    parser.add_argument("--cgroup-root", help="the node's cgroup root, e.g. "
                        "/ambient-harness/<cluster>/<node>; without it pods get no cgroups")
    parser.add_argument("--cgroup-registry", help="the file recording the node's cgroup "
                        "root before it is made, for cleanup")
    parser.add_argument("--proc", default="/proc", help="the procfs of the node's PID "
                        "namespace, which the agent runs in (node/pidinit.py)")
    args = parser.parse_args(argv)
    _set_pdeathsig_term()
    logging.basicConfig(level=os.environ.get("AMBIENT_HARNESS_LOG", "INFO"),
                        format=f"%(asctime)s %(levelname)s {args.node}: %(message)s",
                        stream=sys.stderr)
    return asyncio.run(amain(args))


def _set_pdeathsig_term() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0)


if __name__ == "__main__":
    sys.exit(main())
