"""Log records: encoding, robust decoding among other log lines, merging processes."""

from __future__ import annotations

import pytest

from perf import protocol
from perf.histogram import LatencyHistogram
from perf.tests.helpers import record


def test_decode_skips_noise_and_torn_lines() -> None:
    lines = ["Traceback (most recent call last):", protocol.encode({"type": "hello",
                                                                   "run_id": "a"}),
             protocol.MARKER + '{"type": "st', "[worker 12] warning",
             "2026 " + protocol.encode({"type": "done", "run_id": "a"})]
    assert [r["type"] for r in protocol.decode(lines)] == ["hello", "done"]
    assert protocol.for_run(protocol.decode(lines), "b") == []


def test_encode_refuses_nan_and_untyped_records() -> None:
    with pytest.raises(ValueError):
        protocol.encode({"type": "step", "x": float("nan")})
    with pytest.raises(ValueError):
        protocol.encode({"x": 1})


def test_merge_adds_counts_and_keeps_the_busiest_process() -> None:
    a = record(target=30, latencies=[1.0] * 60, loadgen_cpu=0.2)
    b = {**record(target=20, latencies=[3.0] * 40, errors=2, loadgen_cpu=0.6), "users": 2}
    merged = protocol.merge_steps([a, b])
    assert merged["requests"] == 102 and merged["errors"] == 2
    assert merged["target_rps"] == 50 and merged["users"] == 12 and merged["processes"] == 2
    assert merged["loadgen_peak_process_cpu"] == pytest.approx(0.6)
    h = LatencyHistogram.from_json(merged["histogram"])
    assert h.count == 100 and h.max_ms == 3.0
