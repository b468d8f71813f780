"""What a process on this machine uses, and which processes are a local-cluster pod's.

The one place in ``perf`` that reads processes' CPU and memory; both the load runner's
local sampler (:class:`perf.component_samplers.LocalProcSampler`) and the control-plane
scale benchmark (:mod:`perf.scale.runner`) go through it.  Figures come from psutil:

- CPU: ``cpu_times()`` user + system seconds of the process itself, not of its
  children (``utime`` + ``stime`` of ``/proc/<pid>/stat``);
- resident memory: ``memory_info().rss`` in bytes (``statm``'s resident pages times
  the page size, the same counter as ``VmRSS``).

The local cluster runs containers as plain processes; its node agent gives each one
the environment variable ``AH_POD_NAME=<pod name>`` and runs it in the pod's network
namespace (the node's, for host-network pods such as ztunnel).  Matching both the
variable and the namespace finds a pod's processes without trusting names alone:
several clusters, each with an ``istiod-...`` pod, may run on one machine at once.

Two figures psutil does not give are read from ``/proc`` here, by hand:

- a process's network namespace: psutil has no namespace API.  It is the inode of
  ``/proc/<pid>/ns/net``, the same inode as the pod's ``/run/netns/<name>``;
- peak resident memory (``VmHWM`` of ``/proc/<pid>/status``): psutil's Linux
  ``memory_info()`` has rss, vms, shared, text, lib, data and dirty, no high-water mark.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

POD_NAME_ENV = "AH_POD_NAME"

# Reading a process can fail in these ways when it exits, or is not ours, while we look.
GONE = (psutil.Error, OSError)


@dataclass(frozen=True)
class ProcessUsage:
    """A process's figures at one moment (or a pod's processes', summed)."""

    pid: int
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


def cpu_and_rss(process: psutil.Process) -> tuple[float, int]:
    """User plus system CPU seconds of ``process`` (not its children), and its RSS bytes."""
    with process.oneshot():
        times = process.cpu_times()
        return times.user + times.system, process.memory_info().rss


def netns_inode(pid: int) -> int:
    """The inode of ``pid``'s network namespace (by hand: psutil has no namespaces)."""
    return os.stat(f"{psutil.PROCFS_PATH}/{pid}/ns/net").st_ino


def pod_name(process: psutil.Process) -> str | None:
    """The pod the local cluster's node agent started ``process`` for, if any."""
    return process.environ().get(POD_NAME_ENV)


def parse_status(text: str) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``...) in KiB."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` of ``pid`` in bytes (by hand: psutil has no peak RSS on Linux)."""
    status = Path(psutil.PROCFS_PATH, str(pid), "status").read_text()
    return parse_status(status).get("VmHWM", 0) * 1024


def pod_pids(pod: str, netns: Path | None = None) -> list[int]:
    """Processes whose environment has ``AH_POD_NAME=<pod>`` (and, if ``netns`` is given,
    that live in that network namespace)."""
    inode = netns.stat().st_ino if netns is not None else None
    found = []
    for pid in psutil.pids():
        try:
            if pod_name(psutil.Process(pid)) != pod:
                continue
            if inode is not None and netns_inode(pid) != inode:
                continue
        except GONE:
            continue
        found.append(pid)
    return sorted(found)


def process_usage(pid: int) -> ProcessUsage | None:
    """CPU seconds, RSS and peak RSS of one process (None if it is gone)."""
    try:
        cpu_seconds, rss = cpu_and_rss(psutil.Process(pid))
        peak = peak_rss_bytes(pid)
    except GONE:
        return None
    return ProcessUsage(pid, cpu_seconds, rss, peak)


def pod_usage(pod: str, netns: Path | None = None) -> ProcessUsage | None:
    """A pod's processes summed (one, for the images the scale benchmark reads), under the
    first one's pid; None when it has none."""
    found = [u for pid in pod_pids(pod, netns) if (u := process_usage(pid)) is not None]
    if not found:
        return None
    return ProcessUsage(found[0].pid, sum(u.cpu_seconds for u in found),
                        sum(u.rss_bytes for u in found), sum(u.peak_rss_bytes for u in found))
