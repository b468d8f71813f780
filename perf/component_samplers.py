"""Samplers of the mesh's components: each one's cumulative CPU and memory at one moment.

:class:`ComponentSampler` is the interface: given the pods of each component, return
a :class:`ComponentUsage` per component (cumulative CPU seconds, resident memory).
:mod:`perf.sampling_loop` calls one at a steady pace while load runs.  Two
implementations:

- :class:`LocalProcSampler` for the embedded local cluster, whose containers are
  processes on this machine.  A pod's processes are those in the pod's network
  namespace (``/run/netns/pod-<uid>``; the node's for host-network pods such as
  ztunnel) whose environment carries ``AH_POD_NAME=<pod>``, which the node agent
  sets for every container.  Both must match: several clusters (each with an
  ``istiod-...`` pod) run on one machine at once, and a node's namespace also holds
  the node agent and exec'd commands.  Each process's figures are read by
  :mod:`perf.process_usage` (psutil over ``/proc``): exact CPU seconds at any
  moment, no metrics pipeline needed.
- :class:`MetricsApiSampler` for any other cluster: the ``metrics.k8s.io`` API
  (metrics-server, what ``kubectl top`` reads).  Its figures are averages over the
  server's own window (tens of seconds), so short steps are smeared; when the API
  is not served it says so and every figure is reported unavailable, never zero.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from perf.components import PodRef
from perf.process_usage import GONE, cpu_and_rss, netns_inode, pod_name

NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class ComponentUsage:
    """A component at one moment: CPU seconds since an arbitrary origin, memory now."""

    cpu_s: float
    rss_bytes: int
    pods: int
    processes: int
    open_fds: int | None = None
    """File descriptors open in the component's processes (None: not measured)."""


class ComponentSampler(ABC):
    name: str = "abstract"
    description: str = ""

    def unavailable_reason(self) -> str | None:
        """Why this sampler cannot measure here, or None if it can."""
        return None

    @abstractmethod
    def sample(self, components: Mapping[str, Sequence[PodRef]],
               now: float) -> dict[str, ComponentUsage]:
        """Usage per component; the CPU figure must only grow for a component's
        lifetime in this sampler (it is differenced over step windows)."""


# -- the local cluster: its pods' processes -------------------------------------------


@dataclass
class _Tracked:
    component: str
    process: psutil.Process  # equal to a later Process(pid) only if the pid was not reused
    last_cpu_s: float = 0.0


@dataclass
class LocalProcSampler(ComponentSampler):
    """Processes of the local cluster's pods, found by network namespace and pod name."""

    cluster_name: str
    netns_dir: Path = NETNS_DIR
    name: str = "local-proc"
    description: str = ("per-process /proc of each pod's containers (network namespace + "
                        "AH_POD_NAME), exact CPU seconds and RSS")
    _tracked: dict[int, _Tracked] = field(default_factory=dict)
    _gone_cpu: dict[str, float] = field(default_factory=dict)

    def unavailable_reason(self) -> str | None:
        if not Path(psutil.PROCFS_PATH).is_dir():
            return f"{psutil.PROCFS_PATH} is not readable"
        return None

    def _netns_name(self, pod: PodRef) -> str:
        from clusters.local.network.topology import node_netns, pod_netns

        return node_netns(self.cluster_name, pod.node) if pod.host_network else pod_netns(pod.uid)

    def sample(self, components: Mapping[str, Sequence[PodRef]],
               now: float) -> dict[str, ComponentUsage]:
        wanted: dict[int, list[tuple[str, str]]] = {}  # netns inode -> [(pod name, component)]
        pods_seen: dict[str, int] = {c: 0 for c in components}
        for component, pods in components.items():
            for pod in pods:
                try:
                    inode = os.stat(self.netns_dir / self._netns_name(pod)).st_ino
                except OSError:
                    continue  # not started yet, or gone
                wanted.setdefault(inode, []).append((pod.name, component))
                pods_seen[component] += 1
        cpu: dict[str, float] = {c: self._gone_cpu.get(c, 0.0) for c in components}
        rss: dict[str, int] = {c: 0 for c in components}
        procs: dict[str, int] = {c: 0 for c in components}
        fds: dict[str, int] = {c: 0 for c in components}
        alive: set[int] = set()
        for pid in psutil.pids():
            try:
                inode = netns_inode(pid)
                if inode not in wanted:
                    continue
                process = psutil.Process(pid)
                tracked = self._tracked.get(pid)
                if tracked is None or tracked.process != process:
                    name = pod_name(process)
                    component = next((c for pod, c in wanted[inode] if pod == name), None)
                    if component is None:
                        continue
                    tracked = self._tracked[pid] = _Tracked(component, process)
                cpu_s, rss_bytes = cpu_and_rss(process)
                open_fds = process.num_fds()
            except GONE:
                continue  # exited while we looked
            if tracked.component not in cpu:
                continue
            alive.add(pid)
            tracked.last_cpu_s = cpu_s
            cpu[tracked.component] += tracked.last_cpu_s
            rss[tracked.component] += rss_bytes
            procs[tracked.component] += 1
            fds[tracked.component] += open_fds
        for pid in [p for p in self._tracked if p not in alive]:
            gone = self._tracked.pop(pid)
            # An exited process's CPU stays in its component's total: the counter only grows.
            self._gone_cpu[gone.component] = self._gone_cpu.get(gone.component, 0.0) + \
                gone.last_cpu_s
            if gone.component in cpu:
                cpu[gone.component] += gone.last_cpu_s
        return {c: ComponentUsage(cpu[c], rss[c], pods_seen[c], procs[c], fds[c])
                for c in components}


# -- any cluster: metrics.k8s.io ----------------------------------------------------------


def parse_cpu_quantity(text: str) -> float:
    """Kubernetes CPU quantity (``250m``, ``12345n``, ``1``) in cores."""
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def parse_memory_quantity(text: str) -> int:
    """Kubernetes memory quantity (``12345Ki``, ``64Mi``, ``1G``, ``100``) in bytes."""
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
             "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * units[suffix])
    return int(float(text))


@dataclass
class MetricsApiSampler(ComponentSampler):
    """``metrics.k8s.io`` (metrics-server): instantaneous cores integrated over time."""

    cluster: Any
    name: str = "metrics-api"
    description: str = ("metrics.k8s.io (metrics-server, as kubectl top): averages over the "
                        "server's scrape window, coarse for short steps")
    _cpu: dict[str, float] = field(default_factory=dict)
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)
    _reason: str | None = None
    _checked: bool = False

    def unavailable_reason(self) -> str | None:
        if not self._checked:
            self._checked = True
            result = self.cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1",
                                          check=False)
            if result.returncode != 0:
                self._reason = ("the metrics.k8s.io API is not served by this cluster (no "
                                "metrics-server): component CPU and memory are unavailable")
        return self._reason

    def sample(self, components: Mapping[str, Sequence[PodRef]],
               now: float) -> dict[str, ComponentUsage]:
        import json

        out: dict[str, ComponentUsage] = {}
        for component, pods in components.items():
            cores = 0.0
            rss = 0
            seen = 0
            for pod in pods:
                result = self.cluster.kubectl(
                    "get", "--raw",
                    f"/apis/metrics.k8s.io/v1beta1/namespaces/{pod.namespace}/pods/{pod.name}",
                    check=False)
                if result.returncode != 0:
                    continue
                seen += 1
                for c in json.loads(result.stdout).get("containers") or ():
                    cores += parse_cpu_quantity(c["usage"].get("cpu", "0"))
                    rss += parse_memory_quantity(c["usage"].get("memory", "0"))
            last_t, last_cores = self._last.get(component, (now, cores))
            self._cpu[component] = self._cpu.get(component, 0.0) + \
                (now - last_t) * (last_cores + cores) / 2
            self._last[component] = (now, cores)
            out[component] = ComponentUsage(self._cpu[component], rss, seen, 0)
        return out


def sampler_for(cluster: Any) -> ComponentSampler:
    """The best sampler for ``cluster``: /proc for the local cluster, else metrics.k8s.io."""
    from clusters.local.provider import LocalCluster

    if isinstance(cluster, LocalCluster) and cluster.run_pods:
        return LocalProcSampler(cluster.name)
    return MetricsApiSampler(cluster)
