"""Invalid-step detection: a step that measured Locust is not a result."""

from __future__ import annotations

from perf.tests.helpers import record
from perf.validity import ValidityRules, invalid_reasons

RULES = ValidityRules(rate_tolerance=0.1, loadgen_cpu_limit=0.9)


def test_a_step_on_target_with_an_idle_loadgen_is_valid() -> None:
    assert invalid_reasons(record(target=100, achieved=99), RULES) == []


def test_missing_the_target_rate_beyond_tolerance_is_invalid() -> None:
    reasons = invalid_reasons(record(target=100, achieved=85), RULES)
    assert len(reasons) == 1 and "missed the target rate: 85.0 of 100" in reasons[0]
    assert invalid_reasons(record(target=100, achieved=91), RULES) == []


def test_a_saturated_load_generator_is_invalid_for_rate_and_max_steps() -> None:
    for r in (record(target=100, loadgen_cpu=0.95),
              record(kind="max", target=None, achieved=8000, loadgen_cpu=0.97)):
        assert any("saturated its CPU" in x for x in invalid_reasons(r, RULES))


def test_locust_cpu_warning_is_invalid() -> None:
    r = {**record(), "loadgen_cpu_warning": True}
    assert any("cpu_warning" in x for x in invalid_reasons(r, RULES))


def test_no_requests_is_invalid() -> None:
    r = record(target=100, latencies=[])
    assert any("no request" in x for x in invalid_reasons(r, RULES))


def test_max_steps_have_no_rate_to_miss() -> None:
    assert invalid_reasons(record(kind="max", target=None, achieved=10), RULES) == []
