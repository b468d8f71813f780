"""Fail fast: once a canary never converged, later tests relying on a canary at the same
enforcement point fail at once with that reason, in any process of the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance import waiting
from conformance.apps import AppNamespace, CanaryNeverEnforced, enforcement_point
from conformance.canary_memory import CanaryMemory
from conformance.curl import Response

REPO = Path(__file__).resolve().parents[2]
RESET = Response(status=None, headers={}, body="", exit_code=56, stderr="reset")
ANSWERED = Response(status=200, headers={}, body="ok", exit_code=0, stderr="")


def ztunnel_canary() -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "zz-canary"},
            "spec": {"selector": {"matchLabels": {"app": "productpage"}}, "action": "DENY"}}


def waypoint_canary() -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "zz-canary"},
            "spec": {"targetRefs": [{"kind": "Service", "name": "productpage"}],
                     "action": "DENY"}}


def test_the_enforcement_point_is_the_waypoint_for_target_refs_else_the_ztunnel():
    assert enforcement_point(ztunnel_canary()) == "ztunnel"
    assert enforcement_point(waypoint_canary()) == "waypoint"


def test_a_failure_recorded_in_one_process_is_seen_by_another(tmp_path):
    code = ("from pathlib import Path; from conformance.canary_memory import CanaryMemory; "
            f"CanaryMemory(Path({str(tmp_path)!r})).remember('ztunnel', 'never enforced: x')")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
    memory = CanaryMemory(tmp_path)
    assert memory.failed("ztunnel") == "never enforced: x"
    assert memory.failed("waypoint") is None
    memory.remember("ztunnel", "a later reason")
    assert memory.failed("ztunnel") == "never enforced: x"  # the first reason stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ztunnel.reason"]


def test_a_run_makes_its_folder_only_to_remember_and_sweeps_those_of_dead_runs(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    left_by_a_killed_run = tmp_path / f"ambient-canaries-{dead}-0123abcd"
    left_by_a_killed_run.mkdir()
    (left_by_a_killed_run / "ztunnel.reason").write_text("old")
    still_running = tmp_path / f"ambient-canaries-{os.getpid()}-4567cdef"
    still_running.mkdir()
    memory = CanaryMemory.for_run(tmp_path)
    assert not left_by_a_killed_run.exists() and still_running.is_dir()
    assert memory.folder is not None and not memory.folder.exists()  # nothing to remember
    assert memory.failed("ztunnel") is None  # the killed run's reason is not inherited
    memory.remember("ztunnel", "now")
    assert memory.failed("ztunnel") == "now"
    memory.discard()
    assert not memory.folder.exists()


def test_without_a_folder_the_memory_is_this_process_only():
    memory = CanaryMemory()
    memory.remember("waypoint", "first")
    memory.remember("waypoint", "second")
    assert (memory.failed("waypoint"), memory.failed("ztunnel")) == ("first", None)


class FakeCluster:
    def __init__(self) -> None:
        self.applied: list[list[dict[str, Any]]] = []

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.applied.append(objects)

    def delete(self, objects: list[dict[str, Any]]) -> None:
        pass


@pytest.fixture
def short_timeout(monkeypatch):
    monkeypatch.setattr(waiting, "DEFAULT_TIMEOUT", 0.3)


def _namespace(memory: CanaryMemory, answer: Response, monkeypatch) -> AppNamespace:
    """A namespace whose canary client always gets ``answer``; ``ns.asked`` counts."""
    ns = AppNamespace(FakeCluster(), adapter=None, name="l4-x", canaries=memory)  # type: ignore[arg-type]
    ns.asked = 0  # type: ignore[attr-defined]

    def request(*_args: Any, **_kw: Any) -> Response:
        ns.asked += 1  # type: ignore[attr-defined]
        return answer

    monkeypatch.setattr(ns, "request", request)
    return ns


CASE = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "case"}}


def test_a_canary_vouches_only_for_objects_of_its_own_kind(tmp_path, monkeypatch):
    ns = _namespace(CanaryMemory(tmp_path), RESET, monkeypatch)
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute"}
    rule = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule"}
    with pytest.raises(ValueError, match="cannot show that DestinationRule, HTTPRoute"):
        ns.apply_in_force([CASE, route, rule], waypoint_canary(), "http://x/",
                          lambda r: r.exit_code == 56)
    with pytest.raises(ValueError, match="HTTPRoute"):
        ns.delete_in_force([route], waypoint_canary(), "http://x/", lambda r: r.status == 200)
    assert ns.cluster.applied == [] and ns.asked == 0  # type: ignore[attr-defined]


def test_after_a_canary_never_enforced_the_next_fails_at_once_naming_it(
        tmp_path, monkeypatch, short_timeout):
    memory = CanaryMemory(tmp_path)
    first = _namespace(memory, ANSWERED, monkeypatch)  # the canary is never reset
    with pytest.raises(waiting.NotConverged):
        first.apply_in_force([CASE], ztunnel_canary(), "http://x/",
                             lambda r: r.exit_code == 56)
    assert first.asked > 1  # it waited, observing
    later = _namespace(CanaryMemory(tmp_path), RESET, monkeypatch)  # another worker
    with pytest.raises(CanaryNeverEnforced) as raised:
        later.apply_in_force([CASE], ztunnel_canary(), "http://x/",
                             lambda r: r.exit_code == 56)
    # at once: nothing applied, nothing observed
    assert later.cluster.applied == [] and later.asked == 0  # type: ignore[attr-defined]
    message = str(raised.value)
    assert "canary policy at the ztunnel did not converge" in message
    assert "never enforced (namespace l4-x)" in message and "timed out after 0.3s" in message
    # a canary at another enforcement point is unaffected
    later.apply_in_force([], waypoint_canary(), "http://x/", lambda r: r.exit_code == 56)


def test_a_canary_never_lifted_is_remembered_too(tmp_path, monkeypatch, short_timeout):
    memory = CanaryMemory(tmp_path)
    ns = _namespace(memory, RESET, monkeypatch)  # the canary stays denied
    with pytest.raises(waiting.NotConverged):
        ns.delete_in_force([], waypoint_canary(), "http://x/", lambda r: r.status == 200)
    assert "never lifted" in (memory.failed("waypoint") or "")
    with pytest.raises(CanaryNeverEnforced):
        ns.apply_in_force([], waypoint_canary(), "http://x/", lambda r: r.exit_code == 56)
