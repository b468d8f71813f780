"""Several implementations on the same pods in one perf run (``runner.py``, ``modes.leave``).

The orchestration is checked with recording fakes: which implementation is installed
when each mode is measured, that the pods leave the mesh (observed) before another
implementation is installed, and what the result says when they do not.  The live
run with the reference and real Istio is ``test_live.py``'s
``test_the_real_ztunnel_is_measured_on_the_same_pods``.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from conformance.adapters.base import (
    FLAVOUR_TODAY,
    MeshAdapter,
    WaypointInfo,
)
from perf import modes, runner
from perf.profiles import SHORT
from perf.runner import PerfError, PerfRunner, RunOptions
from profiles.features import CAPTURE, WAYPOINT


class FakeAdapter(MeshAdapter):
    def __init__(self, name: str, log: list[str], *, waypoint: bool = True,
                 no_waypoint_here: str | None = None) -> None:
        self.name = name
        self.log = log
        self.waypoint = waypoint
        self.no_waypoint_here = no_waypoint_here

    def version(self) -> str:
        return "1.0"

    def features(self) -> frozenset[str]:
        return frozenset({CAPTURE, WAYPOINT} if self.waypoint else {CAPTURE})

    def api_flavours(self) -> frozenset[str]:
        return frozenset({FLAVOUR_TODAY})

    def unsupported_on(self, cluster: Any) -> dict[str, str]:
        return {WAYPOINT: self.no_waypoint_here} if self.no_waypoint_here else {}

    def install(self, cluster: Any) -> None:
        self.log.append(f"install {self.name}")

    def uninstall(self, cluster: Any) -> None:
        self.log.append(f"uninstall {self.name}")

    def enroll(self, cluster: Any, namespace: str) -> None:
        self.log.append(f"enroll {self.name}")

    def unenroll(self, cluster: Any, namespace: str) -> None:
        self.log.append(f"unenroll {self.name}")

    def add_waypoint(self, cluster: Any, namespace: str, name: str, **kw: Any) -> WaypointInfo:
        self.log.append(f"add_waypoint {self.name}")
        return WaypointInfo(name, namespace, name, FLAVOUR_TODAY)

    def use_waypoint(self, cluster: Any, namespace: str, kind: Any, name: str,
                     waypoint: WaypointInfo) -> None:
        self.log.append(f"use_waypoint {self.name} {name}")

    def unuse_waypoint(self, cluster: Any, namespace: str, kind: Any, name: str) -> None:
        self.log.append(f"unuse_waypoint {self.name} {name}")

    def remove_waypoint(self, cluster: Any, waypoint: WaypointInfo) -> None:
        self.log.append(f"remove_waypoint {self.name}")


class FakeCluster:
    def apply(self, manifests: Any) -> None:
        pass

    def kubectl(self, *args: str, **kw: Any) -> Any:
        class Done:
            returncode, stdout, stderr = 0, "", ""
        return Done()


class NoSampler:
    name = description = "none"

    def unavailable_reason(self) -> str:
        return "not sampled in this test"


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stubs for everything but the orchestration: capture is announced at once, the
    release is observed at once (unless a test says otherwise), and each measured mode
    is logged with the implementation installed at that moment."""
    state: dict[str, Any] = {"log": [], "stuck": None}
    log: list[str] = state["log"]

    async def captured(cluster: Any, ns: str, timeout: float = 0) -> str | None:
        return None

    async def released(cluster: Any, ns: str, timeout: float = 0) -> str | None:
        return state["stuck"]

    monkeypatch.setattr(modes, "wait_captured", captured)
    monkeypatch.setattr(modes, "wait_released", released)

    async def measure(self: PerfRunner, load: Any, mode: str, target: Any, loadgen: Any,
                      loop: Any, enrolled: bool, sampler_reason: Any, baseline: Any = None, *,
                      adapter: MeshAdapter | None = None, implementation: str | None = None,
                      ) -> tuple[dict[str, Any], modes.ModeState | None]:
        adapter = adapter or self.adapter
        mid = modes.mode_id(mode, implementation)
        try:
            entered = await modes.enter(mode, adapter, self.cluster, target, enrolled=enrolled)
        except modes.ModeUnavailable as exc:
            log.append(f"skip {mid}")
            return {"mode": mid, "status": "skipped", "reason": str(exc)}, None
        assert self.installed is adapter
        log.append(f"measure {mid} on {self.installed.name}")
        return {"mode": mid, "status": "ran", "reason": None}, entered

    async def nothing(*a: Any, **kw: Any) -> None:
        return None

    async def pod(*a: Any, **kw: Any) -> str:
        return "loadgen-0"

    monkeypatch.setattr(PerfRunner, "run_mode", measure)
    monkeypatch.setattr(PerfRunner, "_rollout", nothing)
    monkeypatch.setattr(PerfRunner, "_pod_of", pod)
    monkeypatch.setattr(PerfRunner, "_wait_components_gone",
                        lambda self, ns: _logged(log, f"{ns} pods gone"))
    monkeypatch.setattr(runner, "cluster_info", lambda cluster: {})
    monkeypatch.setattr(runner, "node_names", lambda cluster: ["n1", "n2"])
    monkeypatch.setattr(runner.modes, "SETTLE_S", 0.0)
    return state


async def _logged(log: list[str], what: str) -> None:
    log.append(what)


def _run(adapters: list[MeshAdapter], profile: Any = SHORT) -> dict[str, Any]:
    r = PerfRunner(FakeCluster(), adapters, RunOptions(profile=profile, progress=io.StringIO()),
                   sampler=NoSampler())  # type: ignore[arg-type]
    r.document = lambda *a: {"scenarios": a[3]}  # type: ignore[method-assign]
    return asyncio.run(r.run())


def test_each_implementation_is_measured_on_the_same_pods_after_the_last_left(harness):
    log = harness["log"]
    ref, istio = FakeAdapter("reference", log), FakeAdapter("istio", log)
    doc = _run([ref, istio])
    assert log == [
        "install reference",
        "measure none on reference",
        "enroll reference", "measure l4 on reference",
        "add_waypoint reference", "use_waypoint reference server",
        "measure l7 on reference",
        # out of the mesh, binding first, before anything of the next is installed
        "unuse_waypoint reference server", "remove_waypoint reference",
        "unenroll reference",
        "uninstall reference", "istio-system pods gone", "install istio",
        "enroll istio", "measure l4@istio on istio",
        "add_waypoint istio", "use_waypoint istio server",
        "measure l7@istio on istio",
    ]
    assert [m["mode"] for m in doc["scenarios"][0]["modes"]] == [
        "none", "l4", "l7", "l4@istio", "l7@istio"]


def test_every_scenario_starts_with_the_first_implementation(harness):
    log = harness["log"]
    two = SHORT.replace(loads=(*SHORT.loads, SHORT.loads[0].__class__("bookinfo", (10.0,))))
    _run([FakeAdapter("reference", log), FakeAdapter("istio", log)], two)
    installs = [e for e in log if e.startswith(("install", "uninstall"))]
    assert installs == ["install reference", "uninstall reference", "install istio",
                        "uninstall istio", "install reference", "uninstall reference",
                        "install istio"]
    assert [e for e in log if e.startswith("measure none")] == [
        "measure none on reference", "measure none on reference"]


def test_a_waypoint_the_cluster_cannot_run_is_a_skip_and_nothing_to_unbind(harness):
    log = harness["log"]
    istio = FakeAdapter("istio", log, no_waypoint_here="no Envoy here")
    _run([istio, FakeAdapter("reference", log)])
    assert "skip l7" in log
    assert not [e for e in log if "waypoint istio" in e]
    assert log.index("unenroll istio") < log.index("uninstall istio")


def test_pods_that_never_leave_fail_the_next_implementations_modes_not_the_run(harness):
    log = harness["log"]
    harness["stuck"] = "pods still announced captured: server-1"
    doc = _run([FakeAdapter("reference", log), FakeAdapter("istio", log)])
    got = {m["mode"]: m for m in doc["scenarios"][0]["modes"]}
    assert [got[m]["status"] for m in ("none", "l4", "l7")] == ["ran"] * 3
    for mode in ("l4@istio", "l7@istio"):
        assert got[mode]["status"] == "failed"
        assert "server-1" in got[mode]["reason"]
    assert "install istio" not in log


def test_adapters_are_named_once(harness):
    log = harness["log"]
    with pytest.raises(PerfError, match="measured once per run"):
        PerfRunner(FakeCluster(), [FakeAdapter("a", log), FakeAdapter("a", log)],
                   RunOptions(profile=SHORT))
    with pytest.raises(PerfError, match="at least one"):
        PerfRunner(FakeCluster(), [], RunOptions(profile=SHORT))


def test_mode_ids():
    assert modes.mode_id("l4") == "l4"
    assert modes.mode_id("l4", "istio") == "l4@istio"


def test_a_scenario_that_cannot_be_deployed_fails_alone(harness, monkeypatch):
    log = harness["log"]

    async def rollout(self: PerfRunner, namespace: str, deployments: list[str]) -> None:
        if namespace == "perf-bookinfo":
            raise PerfError("deployment perf-bookinfo/ratings-v1 did not become ready")

    monkeypatch.setattr(PerfRunner, "_rollout", rollout)
    two = SHORT.replace(loads=(*SHORT.loads, SHORT.loads[0].__class__("bookinfo", (10.0,))))
    doc = _run([FakeAdapter("reference", log), FakeAdapter("istio", log)], two)
    direct, bookinfo = doc["scenarios"]
    assert [m["status"] for m in direct["modes"]] == ["ran"] * 5  # kept
    assert bookinfo["status"] == "failed" and "ratings-v1" in bookinfo["reason"]
    from perf.gates import Gates, evaluate

    report = evaluate({"scenarios": [bookinfo]}, Gates())
    assert not report.passed and "bookinfo not measured" in report.failures[0]
    # with nothing measured at all, the run could not be done
    with pytest.raises(PerfError, match="ratings-v1"):
        _run([FakeAdapter("reference", log)], SHORT.replace(loads=two.loads[1:]))
