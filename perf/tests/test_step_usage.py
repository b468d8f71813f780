"""Cutting cumulative CPU samples into step windows."""

from __future__ import annotations

import pytest

from perf.step_usage import MIB, Sample, cpu_at, window_usage


def samples() -> list[Sample]:
    # 0.5 cores from t=0 to t=10, memory growing 10 -> 20 MiB
    return [Sample(t, 0.5 * t, int((10 + t) * MIB), 2) for t in range(0, 11)]


def test_interpolates_between_samples() -> None:
    assert cpu_at(samples(), 2.5) == pytest.approx(1.25)
    assert cpu_at(samples(), 11) is None


def test_window_usage() -> None:
    u = window_usage(samples(), 2.5, 6.5, requests=400)
    assert u["available"] and u["pods"] == 2
    assert u["cpu_seconds"] == pytest.approx(2.0)
    assert u["cpu_cores"] == pytest.approx(0.5)
    assert u["cpu_seconds_per_1k_requests"] == pytest.approx(5.0)
    assert u["mem_mb_avg"] == pytest.approx(14.5) and u["mem_mb_max"] == pytest.approx(16)


def test_uncovered_window_is_unavailable_not_zero() -> None:
    u = window_usage(samples()[:3], 1, 5, 10)
    assert u == {"available": False, "reason": u["reason"]} and "samples" in u["reason"]


def test_zero_requests_has_no_per_request_figure() -> None:
    assert window_usage(samples(), 1, 2, 0)["cpu_seconds_per_1k_requests"] is None
