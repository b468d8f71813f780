"""SLO gates as a pure function: pass on a normal result, fail on an injected slowdown."""

from __future__ import annotations

from perf.gates import Gates, evaluate
from perf.tests.helpers import document, mode, record, three_modes

GATES = Gates(max_p99_overhead_ms=5.0, max_error_rate=0.01, min_throughput_ratio=0.1)


def test_a_normal_result_passes() -> None:
    report = evaluate(three_modes(extra_ms={"l4": 0.2, "l7": 1.0}), GATES)
    assert report.passed, report.text()
    assert report.checks > 10


def test_injected_latency_fails_the_p99_gate_for_that_mode_only() -> None:
    report = evaluate(three_modes(extra_ms={"l4": 20.0}), GATES)
    assert not report.passed
    assert report.failures and all("direct/l4" in f and "p99 overhead" in f
                                   for f in report.failures)
    assert "FAIL" in report.text()


def test_errors_fail_the_error_rate_gate() -> None:
    doc = document([mode("none", [record(target=100)]),
                    mode("l4", [record(target=100, errors=20)])])
    report = evaluate(doc, GATES)
    assert any("error rate" in f and "HTTP 503" in f for f in report.failures)


def test_a_mode_without_valid_steps_fails_rather_than_passing_silently() -> None:
    doc = document([mode("none", [record(target=100)]),
                    mode("l4", [record(target=100, achieved=40)])])
    report = evaluate(doc, GATES)
    assert any("no valid step" in f and "missed the target rate" in f for f in report.failures)


def test_throughput_ratio_gate() -> None:
    report = evaluate(three_modes(peaks={"none": 10_000, "l4": 5000, "l7": 500}), GATES)
    assert [f for f in report.failures if "max throughput" in f] == [
        "direct/l7: max throughput 5% of no-mesh < 10%"]


def test_failed_mode_fails_and_skipped_mode_is_a_note() -> None:
    doc = three_modes()
    modes = doc["scenarios"][0]["modes"]
    modes[1].update(status="failed", reason="target unreachable")
    modes[2].update(status="skipped", reason="no waypoint support")
    report = evaluate(doc, GATES)
    assert report.failures == ["direct/l4 failed: target unreachable"]
    assert any("skipped" in n for n in report.notes)


def test_disabled_gates_check_nothing_about_latency() -> None:
    report = evaluate(three_modes(extra_ms={"l4": 500.0}), Gates(max_p99_overhead_ms=None))
    assert report.passed
