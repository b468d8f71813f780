"""CPU and memory of the mesh's components, sampled while load runs.

:class:`ResourceSampler` is the interface: given the pods of each component, return
cumulative CPU seconds and resident memory per component.  Two implementations:

- :class:`LocalProcSampler` for the embedded local cluster, whose containers are
  processes on this machine.  A pod's processes are those in the pod's network
  namespace (``/run/netns/pod-<uid>``; the node's for host-network pods such as
  ztunnel) whose environment carries ``AH_POD_NAME=<pod>``, which the node agent
  sets for every container.  Both must match: several clusters (each with an
  ``istiod-...`` pod) run on one machine at once, and a node's namespace also holds
  the node agent and exec'd commands.  Figures come from ``/proc/<pid>/stat`` and
  ``statm``: exact CPU seconds at any moment, no metrics pipeline needed.
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

NETNS_DIR = Path("/run/netns")
PROC = Path("/proc")


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str
    node: str
    host_network: bool = False

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> PodRef:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        return cls(meta["namespace"], meta["name"], meta["uid"], spec.get("nodeName") or "",
                   bool(spec.get("hostNetwork")))


@dataclass(frozen=True)
class Usage:
    """A component at one moment: CPU seconds since an arbitrary origin, memory now."""

    cpu_s: float
    rss_bytes: int
    pods: int
    processes: int


class ResourceSampler(ABC):
    name: str = "abstract"
    description: str = ""

    def unavailable_reason(self) -> str | None:
        """Why this sampler cannot measure here, or None if it can."""
        return None

    @abstractmethod
    def sample(self, components: Mapping[str, Sequence[PodRef]], now: float) -> dict[str, Usage]:
        """Usage per component; the CPU figure must only grow for a component's
        lifetime in this sampler (it is differenced over step windows)."""


# -- the local cluster: /proc ----------------------------------------------------------


def parse_stat(text: str) -> tuple[float, int]:
    """(utime + stime in clock ticks, start time in ticks) from ``/proc/<pid>/stat``.

    The command name (field 2) may contain spaces and parentheses, so fields are
    counted from the last ``)``.
    """
    rest = text.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); utime, stime are fields 14, 15; starttime is 22.
    return float(int(rest[11]) + int(rest[12])), int(rest[19])


def environ_has(environ: bytes, key: str, value: str) -> bool:
    return f"{key}={value}".encode() in environ.split(b"\0")


@dataclass
class _Tracked:
    component: str
    start: int
    last_cpu_s: float = 0.0


@dataclass
class LocalProcSampler(ResourceSampler):
    """Processes of the local cluster's pods, found by network namespace and pod name."""

    cluster_name: str
    netns_dir: Path = NETNS_DIR
    proc: Path = PROC
    name: str = "local-proc"
    description: str = ("per-process /proc of each pod's containers (network namespace + "
                        "AH_POD_NAME), exact CPU seconds and RSS")
    _tracked: dict[int, _Tracked] = field(default_factory=dict)
    _gone_cpu: dict[str, float] = field(default_factory=dict)
    _tick: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))
    _page: int = field(default_factory=lambda: os.sysconf("SC_PAGE_SIZE"))

    def unavailable_reason(self) -> str | None:
        if not self.proc.is_dir():
            return f"{self.proc} is not readable"
        return None

    def _netns_name(self, pod: PodRef) -> str:
        from clusters.local.network.topology import node_netns, pod_netns

        return node_netns(self.cluster_name, pod.node) if pod.host_network else pod_netns(pod.uid)

    def sample(self, components: Mapping[str, Sequence[PodRef]], now: float) -> dict[str, Usage]:
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
        alive: set[int] = set()
        for entry in self.proc.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                link = os.readlink(entry / "ns" / "net")
                inode = int(link[link.index("[") + 1:-1])
                if inode not in wanted:
                    continue
                ticks, start = parse_stat((entry / "stat").read_text())
                tracked = self._tracked.get(pid)
                if tracked is None or tracked.start != start:
                    environ = (entry / "environ").read_bytes()
                    component = next((c for pod, c in wanted[inode]
                                      if environ_has(environ, "AH_POD_NAME", pod)), None)
                    if component is None:
                        continue
                    tracked = self._tracked[pid] = _Tracked(component, start)
                pages = int((entry / "statm").read_text().split()[1])
            except (OSError, ValueError, IndexError):
                continue  # exited while we looked
            if tracked.component not in cpu:
                continue
            alive.add(pid)
            tracked.last_cpu_s = ticks / self._tick
            cpu[tracked.component] += tracked.last_cpu_s
            rss[tracked.component] += pages * self._page
            procs[tracked.component] += 1
        for pid in [p for p in self._tracked if p not in alive]:
            gone = self._tracked.pop(pid)
            # An exited process's CPU stays in its component's total: the counter only grows.
            self._gone_cpu[gone.component] = self._gone_cpu.get(gone.component, 0.0) + \
                gone.last_cpu_s
            if gone.component in cpu:
                cpu[gone.component] += gone.last_cpu_s
        return {c: Usage(cpu[c], rss[c], pods_seen[c], procs[c]) for c in components}


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
class MetricsApiSampler(ResourceSampler):
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

    def sample(self, components: Mapping[str, Sequence[PodRef]], now: float) -> dict[str, Usage]:
        import json

        out: dict[str, Usage] = {}
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
            out[component] = Usage(self._cpu[component], rss, seen, 0)
        return out


def sampler_for(cluster: Any) -> ResourceSampler:
    """The best sampler for ``cluster``: /proc for the local cluster, else metrics.k8s.io."""
    from clusters.local.provider import LocalCluster

    if isinstance(cluster, LocalCluster) and cluster.run_pods:
        return LocalProcSampler(cluster.name)
    return MetricsApiSampler(cluster)
