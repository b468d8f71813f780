"""The environment a result was measured in (SMP's ``EnvironmentConfig``, extended).

Numbers from a 2-core development machine are only comparable with numbers from
the same kind of machine, so every result carries what it ran on: the nodes as
the API reports them, and the host's kernel and CPU count.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any


def host_info() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "os": platform.system(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def cluster_info(cluster: Any) -> dict[str, Any]:
    """Nodes and the Kubernetes version, as the API reports them (blocking)."""
    out: dict[str, Any] = {"provider": type(cluster).__name__, "cluster_name": cluster.name}
    result = cluster.kubectl("version", "-o", "json", check=False)
    try:
        out["kubernetes"] = json.loads(result.stdout).get("serverVersion", {}).get("gitVersion")
    except ValueError:
        out["kubernetes"] = None
    from kubernetes import client

    with cluster.api_client() as api:
        nodes = client.CoreV1Api(api).list_node().items
    out["nodes"] = len(nodes)
    out["node_info"] = [{
        "name": n.metadata.name,
        "kernel": getattr(n.status.node_info, "kernel_version", None),
        "kubelet": getattr(n.status.node_info, "kubelet_version", None),
        "cpu": (n.status.capacity or {}).get("cpu"),
        "memory": (n.status.capacity or {}).get("memory"),
    } for n in nodes]
    return out


def node_names(cluster: Any) -> list[str]:
    from kubernetes import client

    with cluster.api_client() as api:
        return sorted(n.metadata.name for n in client.CoreV1Api(api).list_node().items)
