"""The latency histogram: sub-millisecond resolution, exact-enough percentiles, JSON."""

from __future__ import annotations

import math
import random

import pytest

from perf.histogram import LatencyHistogram, bucket_of, bucket_width, exact_percentile


def test_exact_microseconds_below_one_millisecond() -> None:
    for us in (0, 1, 170, 999, 1023):
        assert bucket_of(us) == us and bucket_width(us) == 1


def test_relative_bucket_width_is_under_a_tenth_of_a_percent() -> None:
    for us in (1024, 5_000, 123_456, 9_999_999):
        lower = bucket_of(us)
        assert lower <= us < lower + bucket_width(lower)
        assert bucket_width(lower) / lower <= 1 / 1024


def test_a_ztunnel_sized_difference_is_visible() -> None:
    """0.17 ms on top of 0.50 ms: Locust's whole-millisecond buckets would show 1 and 1."""
    a = LatencyHistogram().extend([0.50] * 100)
    b = LatencyHistogram().extend([0.67] * 100)
    assert b.percentile(50) - a.percentile(50) == pytest.approx(0.17, abs=0.002)


@pytest.mark.parametrize("p", [50, 90, 99, 99.9])
def test_percentiles_match_raw_values_within_resolution(p: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 1.2) for _ in range(20_000)]
    h = LatencyHistogram().extend(values)
    exact = exact_percentile(values, p)
    assert h.percentile(p) == pytest.approx(exact, rel=1e-3, abs=1e-3)


def test_percentiles_never_exceed_max_or_undercut_min() -> None:
    h = LatencyHistogram().extend([1.0001, 1.0002, 250.0])
    assert h.percentile(99.9) == 250.0
    assert h.percentile(1) >= h.min_ms
    assert h.summary()["p99.9"] <= h.summary()["max"]


def test_empty_histogram_reports_nan_not_zero() -> None:
    h = LatencyHistogram()
    assert math.isnan(h.percentile(50))
    assert math.isnan(h.summary()["max"])


def test_bad_percentile_is_rejected() -> None:
    with pytest.raises(ValueError):
        LatencyHistogram().extend([1.0]).percentile(0)


def test_json_round_trip_and_merge() -> None:
    a = LatencyHistogram().extend([0.5, 1.5, 2.5])
    b = LatencyHistogram().extend([3.5, 100.25])
    back = LatencyHistogram.from_json(a.to_json())
    assert back == a
    merged = LatencyHistogram.from_json(a.to_json()).merge(b)
    assert merged.count == 5 and merged.max_ms == 100.25 and merged.min_ms == 0.5
    assert merged.sum_ms == pytest.approx(108.25)


def test_inconsistent_json_is_rejected() -> None:
    data = LatencyHistogram().extend([1.0]).to_json()
    data["count"] = 3
    with pytest.raises(ValueError, match="count"):
        LatencyHistogram.from_json(data)
    with pytest.raises(ValueError, match="unit"):
        LatencyHistogram.from_json({**data, "count": 1, "unit": "ms"})
