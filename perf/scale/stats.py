"""Summaries of latency samples: pure functions, so the numbers a report prints are tested.

Percentiles use the nearest-rank method (the smallest sample with at least p% of the
samples at or below it).  It never invents a value between two measurements, and with
fewer than 100 samples it makes p99 the maximum: with 20 changes per size a "p99" is the
worst change, which is the honest reading of so few samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of non-empty ``samples``."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    ordered = sorted(samples)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarize(samples: Iterable[float | None]) -> dict[str, Any]:
    """Count, misses (``None``: never observed within the time limit), p50, p90, p99, max
    and mean of the observed samples, in seconds rounded to the millisecond's tenth.

    Misses are counted rather than dropped silently: a change a ztunnel never enforced
    is the worst outcome, and a p99 over the others alone would hide it.
    """
    values = list(samples)
    seen = [v for v in values if v is not None]
    out: dict[str, Any] = {"n": len(values), "missed": len(values) - len(seen)}
    if not seen:
        out.update({"p50_s": None, "p90_s": None, "p99_s": None, "max_s": None,
                    "mean_s": None})
        return out
    out.update({
        "p50_s": _round(percentile(seen, 50)),
        "p90_s": _round(percentile(seen, 90)),
        "p99_s": _round(percentile(seen, 99)),
        "max_s": _round(max(seen)),
        "mean_s": _round(sum(seen) / len(seen)),
    })
    return out


def _round(value: float) -> float:
    return round(value, 4)
