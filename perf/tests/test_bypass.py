"""A mesh mode whose traffic evidently bypassed ztunnel fails instead of reporting no-mesh
numbers as mesh numbers."""

from __future__ import annotations

from perf.runner import bypassed_ztunnel
from perf.tests.helpers import mode, record


def test_ztunnel_at_idle_under_load_means_bypassed() -> None:
    baseline = mode("none", [record(target=100)], cores=0.002)
    idle = mode("l4", [record(target=100)], cores=0.002)
    reason = bypassed_ztunnel(idle, baseline)
    assert reason and "not in the path" in reason


def test_busy_ztunnel_is_in_the_path() -> None:
    baseline = mode("none", [record(target=100)], cores=0.002)
    busy = mode("l4", [record(target=100)], cores=0.04)  # 0.38 s per 1k over idle
    assert bypassed_ztunnel(busy, baseline) is None


def test_idle_noise_at_a_low_rate_does_not_hide_a_bypass() -> None:
    """At 10 req/s, 0.002 cores of idle jitter look like 0.2 s per 1k; the busiest step
    (the throughput probe) decides."""
    baseline = mode("none", [record(target=10)], record(kind="max", target=None,
                                                         achieved=1000), cores=0.0)
    l4 = mode("l4", [record(target=10)], record(kind="max", target=None, achieved=1000),
              cores=0.002)
    assert bypassed_ztunnel(l4, baseline)
