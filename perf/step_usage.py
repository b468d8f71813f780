"""A component's figures over one step: cores, CPU-seconds per 1,000 requests, memory.

Cuts the series of :class:`Sample` that :mod:`perf.sampling_loop` records into step
windows.  Samples hold *cumulative* CPU seconds at irregular moments; a step's
window rarely starts or ends on a sample, so its CPU is the difference of the
cumulative curve linearly interpolated at the window's edges.  Memory is the mean
and the peak of the samples inside the window.  Pure functions, so the arithmetic
is tested without a cluster.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    """One component at one moment: cumulative CPU seconds, resident memory, pods seen."""

    t: float
    cpu_s: float
    rss_bytes: int
    pods: int = 0
    processes: int = 0


def cpu_at(samples: Sequence[Sample], t: float) -> float | None:
    """Cumulative CPU at ``t`` by linear interpolation; None outside the sampled span."""
    if not samples or t < samples[0].t or t > samples[-1].t:
        return None
    times = [s.t for s in samples]
    i = bisect_left(times, t)
    if samples[i].t == t or i == 0:
        return samples[i].cpu_s
    a, b = samples[i - 1], samples[i]
    frac = (t - a.t) / (b.t - a.t) if b.t > a.t else 1.0
    return a.cpu_s + frac * (b.cpu_s - a.cpu_s)


def window_usage(samples: Sequence[Sample], start: float, end: float,
                 requests: int) -> dict[str, Any]:
    """A component's usage over ``[start, end]``, or ``available: False`` with the reason."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end}]")
    c0, c1 = cpu_at(samples, start), cpu_at(samples, end)
    if c0 is None or c1 is None:
        return {"available": False,
                "reason": "no resource samples cover the whole measurement window"}
    inside = [s for s in samples if start <= s.t <= end] or \
        [min(samples, key=lambda s: abs(s.t - (start + end) / 2))]
    cpu = max(0.0, c1 - c0)
    return {
        "available": True,
        "pods": max(s.pods for s in inside),
        "cpu_seconds": cpu,
        "cpu_cores": cpu / (end - start),
        "cpu_seconds_per_1k_requests": cpu / requests * 1000 if requests else None,
        "mem_mb_avg": sum(s.rss_bytes for s in inside) / len(inside) / MIB,
        "mem_mb_max": max(s.rss_bytes for s in inside) / MIB,
        "samples": len(inside),
    }
