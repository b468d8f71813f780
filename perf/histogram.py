"""A latency histogram with sub-millisecond resolution, and its percentiles.

Locust's own percentiles round every response time to whole milliseconds below
100 ms (and to two significant digits above), which hides a ztunnel's 0.2 ms and
gives "p99 > max" oddities.  This histogram keeps exact microseconds below
``2**SUB_BITS`` µs (about 1 ms) and a relative bucket width under 0.1 % above, in
the spirit of HdrHistogram, so every recorded latency is kept at a resolution
finer than anything we report, in a few kilobytes whatever the request count.
Percentiles are nearest-rank and clamped to the exact min and max.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUB_BITS = 10
"""Exact microseconds below 2**10 µs; above, each power of two splits into 2**10 buckets."""

REPORTED_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def bucket_of(micros: int) -> int:
    """The lower bound (µs) of the bucket holding ``micros``."""
    if micros < (1 << SUB_BITS):
        return max(micros, 0)
    shift = micros.bit_length() - 1 - SUB_BITS
    return (micros >> shift) << shift


def bucket_width(lower: int) -> int:
    """The width (µs) of the bucket starting at ``lower``: 1 below 2**SUB_BITS."""
    if lower < (1 << SUB_BITS):
        return 1
    return 1 << (lower.bit_length() - 1 - SUB_BITS)


@dataclass
class LatencyHistogram:
    """Counts of latencies per bucket, plus exact count, sum, min and max (ms)."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    sum_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0

    def record(self, ms: float) -> None:
        """Add one latency in milliseconds (negative values, a clock oddity, count as 0)."""
        ms = max(ms, 0.0)
        key = bucket_of(round(ms * 1000))
        self.buckets[key] = self.buckets.get(key, 0) + 1
        self.count += 1
        self.sum_ms += ms
        self.min_ms = min(self.min_ms, ms)
        self.max_ms = max(self.max_ms, ms)

    def extend(self, values_ms: Iterable[float]) -> LatencyHistogram:
        for v in values_ms:
            self.record(v)
        return self

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add ``other``'s counts into this one (several load processes, one step)."""
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n
        self.count += other.count
        self.sum_ms += other.sum_ms
        self.min_ms = min(self.min_ms, other.min_ms)
        self.max_ms = max(self.max_ms, other.max_ms)
        return self

    @property
    def mean_ms(self) -> float:
        return self.sum_ms / self.count if self.count else math.nan

    def percentile(self, p: float) -> float:
        """The nearest-rank ``p``-th percentile (0 < p <= 100) in ms; NaN when empty.

        The bucket's midpoint is reported, clamped to [min, max], so p99 can never
        exceed the maximum and the error is at most half a bucket (0.5 µs, or 0.05 %).
        """
        if not 0 < p <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {p}")
        if not self.count:
            return math.nan
        rank = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                mid_ms = (key + (bucket_width(key) - 1) / 2) / 1000
                return min(max(mid_ms, self.min_ms), self.max_ms)
        return self.max_ms  # unreachable: the counts add up to count

    def summary(self, percentiles: Iterable[float] = REPORTED_PERCENTILES) -> dict[str, float]:
        """``{"p50": .., "p90": .., "p99": .., "p99.9": .., "min", "max", "mean"}`` in ms."""
        out = {f"p{p:g}": self.percentile(p) for p in percentiles}
        out.update(min=self.min_ms if self.count else math.nan,
                   max=self.max_ms if self.count else math.nan, mean=self.mean_ms)
        return out

    # -- JSON -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Sparse and self-describing, so a result file can be re-analysed later."""
        return {
            "unit": "us",
            "sub_bucket_bits": SUB_BITS,
            "count": self.count,
            "sum_ms": self.sum_ms,
            "min_ms": self.min_ms if self.count else None,
            "max_ms": self.max_ms if self.count else None,
            "buckets": [[k, self.buckets[k]] for k in sorted(self.buckets)],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        if data.get("unit", "us") != "us" or data.get("sub_bucket_bits", SUB_BITS) != SUB_BITS:
            raise ValueError(
                f"histogram with unit {data.get('unit')!r} and {data.get('sub_bucket_bits')} "
                f"sub-bucket bits; this reader knows 'us' with {SUB_BITS}")
        buckets = {int(k): int(n) for k, n in data.get("buckets") or ()}
        count = int(data.get("count", sum(buckets.values())))
        if count != sum(buckets.values()):
            raise ValueError(f"histogram count {count} != sum of its buckets "
                             f"{sum(buckets.values())}")
        return cls(buckets=buckets, count=count, sum_ms=float(data.get("sum_ms", 0.0)),
                   min_ms=float(data["min_ms"]) if data.get("min_ms") is not None else math.inf,
                   max_ms=float(data["max_ms"]) if data.get("max_ms") is not None else 0.0)


def exact_percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile of raw values: the reference the histogram is tested against."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]
