"""What every component's process does first: stop cleanly on a signal, reach the API.

istiod, the ztunnel and the waypoint each run ``ambient-reference <component>``
and begin the same way; that beginning lives here once.
"""

from __future__ import annotations

import asyncio
import signal

from .kube import KubeClient


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: the component's cue to shut down cleanly
    (the kubelet sends SIGTERM when it stops a pod)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def kube_client(kubeconfig: str | None) -> KubeClient:
    """The API client: from ``--kubeconfig`` when given (outside a cluster), else the
    pod's mounted service account."""
    return KubeClient.from_kubeconfig(kubeconfig) if kubeconfig else KubeClient.in_cluster()
