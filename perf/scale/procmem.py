"""Memory and CPU of a pod's processes, read from /proc.

The local cluster runs containers as plain processes; its node agent gives each one the
environment variable ``AH_POD_NAME=<pod name>`` and runs it in the pod's network namespace
(the node's, for host-network pods such as ztunnel).  Matching both the variable and the
namespace finds a pod's processes without trusting names alone: several clusters, each
with an ``istiod-...`` pod, may run on one machine at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from perf.resources import environ_has

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessSample:
    """One process's figures at one moment (KiB and CPU seconds)."""

    pid: int
    rss_kib: int
    hwm_kib: int
    cpu_seconds: float


def parse_status(text: str) -> dict[str, int]:
    """The ``kB`` fields of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``...) in KiB."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


def parse_stat_cpu(text: str, ticks_per_second: int) -> float:
    """User plus system CPU seconds from ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may hold spaces, so fields are
    counted after its closing parenthesis: utime and stime are fields 14 and 15.
    """
    rest = text[text.rindex(")") + 2 :].split()
    utime, stime = int(rest[11]), int(rest[12])
    return (utime + stime) / ticks_per_second


def pod_pids(pod_name: str, netns: Path | None = None, proc: Path = PROC) -> list[int]:
    """Processes whose environment has ``AH_POD_NAME=pod_name`` (and, if ``netns`` is
    given, that live in that network namespace)."""
    inode = netns.stat().st_ino if netns is not None else None
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not environ_has((entry / "environ").read_bytes(), "AH_POD_NAME", pod_name):
                continue
            if inode is not None and (entry / "ns" / "net").stat().st_ino != inode:
                continue
        except OSError:  # gone meanwhile, or not ours to read
            continue
        found.append(int(entry.name))
    return sorted(found)


def sample(pid: int, proc: Path = PROC) -> ProcessSample | None:
    """RSS, peak RSS and CPU time of one process (None if it is gone)."""
    try:
        status = parse_status((proc / str(pid) / "status").read_text())
        cpu = parse_stat_cpu((proc / str(pid) / "stat").read_text(),
                             os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None
    return ProcessSample(pid, status.get("VmRSS", 0), status.get("VmHWM", 0), cpu)


def sample_pod(pod_name: str, netns: Path | None = None) -> ProcessSample | None:
    """A pod's processes summed (one, for the images this benchmark reads)."""
    samples = [s for pid in pod_pids(pod_name, netns) if (s := sample(pid)) is not None]
    if not samples:
        return None
    return ProcessSample(samples[0].pid, sum(s.rss_kib for s in samples),
                         sum(s.hwm_kib for s in samples), sum(s.cpu_seconds for s in samples))
