"""Plans, schedules, splitting across load processes, fault injection paths."""

from __future__ import annotations

import pytest

from perf.plan import Fault, Faults, LoadPlan, PlanError, Step, schedule, split_plan, users_for
from perf.profiles import FULL, SHORT, get_profile


def plan(**kw: object) -> LoadPlan:
    base: dict[str, object] = {
        "run_id": "r", "scenario": "direct", "host": "http://server",
        "steps": (Step("rate", 5, 1.0, 2.0, 50.0), Step("max", 16, 1.0, 1.0)),
    }
    return LoadPlan(**{**base, **kw})  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    p = plan(processes=2)
    assert LoadPlan.from_json(p.to_json()) == p


@pytest.mark.parametrize(("data", "message"), [
    ({"steps": [{"kind": "rate", "users": 1, "warmup_s": 0, "duration_s": 1}]}, "target_rps"),
    ({"steps": [{"kind": "burst", "users": 1, "warmup_s": 0, "duration_s": 1}]}, "kind"),
    ({"bogus": 1}, "unknown plan fields: bogus"),
    ({"host": "server"}, "http"),
    ({"steps": []}, "at least one step"),
    ({"processes": 0}, "processes"),
])
def test_malformed_plans_name_the_problem(data: dict, message: str) -> None:
    good = plan().to_json()
    with pytest.raises(PlanError, match=message):
        LoadPlan.from_json({**good, **data})


def test_schedule_is_absolute_and_contiguous() -> None:
    p = plan(cooldown_s=0.5)
    s = schedule(p, 100.0)
    assert (s[0].begin, s[0].window_start, s[0].window_end, s[0].stop) == (100, 101, 103, 103.5)
    assert s[1].begin == 103.5 and s[1].window_end == 105.5
    assert p.expected_seconds() == pytest.approx(p.start_delay_s + 3.5 + 2.5)


def test_split_keeps_total_users_and_rate() -> None:
    parts = split_plan(plan(processes=2, steps=(Step("rate", 5, 1, 2, 50.0),)))
    assert [p.steps[0].users for p in parts] == [3, 2]
    assert sum(p.steps[0].target_rps or 0 for p in parts) == pytest.approx(50.0)
    assert all(p.processes == 1 for p in parts)


def test_split_with_fewer_users_than_processes_keeps_the_target() -> None:
    parts = split_plan(plan(processes=2, steps=(Step("rate", 1, 1, 2, 10.0),)))
    assert [p.steps[0].users for p in parts] == [1, 1]
    assert [p.steps[0].target_rps for p in parts] == [5.0, 5.0]


def test_users_for_paces_each_user_below_its_budget() -> None:
    assert users_for(50, 10, 64) == 5
    assert users_for(401, 10, 64) == 41
    assert users_for(10_000, 10, 64) == 64
    with pytest.raises(PlanError):
        users_for(0, 10, 64)


def test_faults_only_touch_their_mode() -> None:
    f = Faults({"l4": Fault(25)})
    assert f.path_for("l4", "/") == "/?delay_ms=25"
    assert f.path_for("l4", "/a?b=1") == "/a?b=1&delay_ms=25"
    assert f.path_for("none", "/") == "/"


def test_profiles() -> None:
    assert get_profile("short") is SHORT
    with pytest.raises(PlanError, match="unknown profile 'huge'"):
        get_profile("huge")
    assert SHORT.estimated_seconds() < FULL.estimated_seconds()
    steps = SHORT.rate_steps(SHORT.loads[0])
    assert [s.target_rps for s in steps] == [50.0, 100.0]
    with pytest.raises(PlanError, match="unknown modes"):
        SHORT.replace(modes=("none", "sidecar"))
