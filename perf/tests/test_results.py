"""The result document: SMP fields, ambient extensions, baseline deltas, JSON-safety."""

from __future__ import annotations

import json

import pytest

from perf.tests.helpers import three_modes

SMP_RESULT_FIELDS = {"latencies_ms", "actual_qps", "start_time", "end_time"}
SMP_LATENCIES = {"min", "average", "p50", "p90", "p99", "max"}


def test_smp_shape_per_mode_and_step() -> None:
    doc = three_modes()
    json.dumps(doc, allow_nan=False)  # no NaN leaks into the file
    scenario = doc["scenarios"][0]
    assert [m["mode"] for m in scenario["modes"]] == ["none", "l4", "l7"]
    for m in scenario["modes"]:
        for step in [*m["steps"], m["max_throughput"]]:
            assert set(step) >= SMP_RESULT_FIELDS
            assert SMP_LATENCIES | {"p99_9"} <= set(step["latencies_ms"])
            assert {"target_rps", "requests", "errors", "error_rate", "valid",
                    "invalid_reasons", "histogram", "components", "loadgen"} <= set(step)
            z = step["components"]["ztunnel"]
            assert {"cpu_cores", "cpu_seconds_per_1k_requests", "mem_mb_avg",
                    "mem_mb_max"} <= set(z)


def test_overhead_is_against_the_same_rate_without_mesh() -> None:
    doc = three_modes(extra_ms={"l4": 0.2, "l7": 3.0})
    modes = {m["mode"]: m for m in doc["scenarios"][0]["modes"]}
    assert all(s["overhead_ms"] is None for s in modes["none"]["steps"])
    l4 = modes["l4"]["steps"][0]["overhead_ms"]
    assert l4["p50"] == pytest.approx(0.2, abs=0.05)
    assert modes["l7"]["steps"][1]["overhead_ms"]["p99"] == pytest.approx(3.0, abs=0.1)


def test_throughput_ratio_and_summary() -> None:
    doc = three_modes(peaks={"none": 4000, "l4": 3000, "l7": 1000})
    s = doc["summary"]["direct"]
    assert s["l4"]["max_throughput_ratio"] == pytest.approx(0.75)
    assert s["l7"]["max_throughput_ratio"] == pytest.approx(0.25)
    assert s["none"]["valid_steps"] == 2
    assert s["l7"]["cpu_seconds_per_1k_requests"]["ztunnel"] > \
        s["l4"]["cpu_seconds_per_1k_requests"]["ztunnel"]


def test_invalid_baseline_means_no_ratio_and_no_overhead() -> None:
    from perf.tests.helpers import document, mode, record

    base = mode("none", [record(target=100, achieved=50)],
                record(kind="max", target=None, achieved=9000, loadgen_cpu=0.99))
    l4 = mode("l4", [record(target=100)], record(kind="max", target=None, achieved=3000))
    doc = document([base, l4])
    m = doc["scenarios"][0]["modes"][1]
    assert m["steps"][0]["overhead_ms"] is None
    assert m["max_throughput"]["ratio_to_baseline"] is None
