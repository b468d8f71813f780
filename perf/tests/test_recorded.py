"""The SLO gates over recorded results: pass and fail, the same every time.

``recorded/`` holds result documents of real live runs, written by the runner as
they were (compact JSON), on this project's 2-core development machine with its
load average around 20:

* ``short-run.json``: ``python -m perf run --profile short`` (no mesh, L4, L4+L7).
  Its p99 overheads at 50 req/s are 11.6 ms (L4) and 47.3 ms (L7); its L7 step at
  100 req/s missed its target rate (invalid); L7's peak is 47% of no-mesh.
* ``short-run-busier.json``: the same profile, run by ``test_live.py`` on a busier
  moment: every step valid, and L7 at 100 req/s 66.4 ms over no mesh, above the
  default 50 ms gate (the run that would have failed a test asserting the SLO).
* ``injected-slowdown.json``: ``test_live.py``'s injected-slowdown run, the server
  delaying every L4 request by 250 ms (five times the default 50 ms gate): p99 371 ms
  over no mesh.

Since the documents never change, the verdicts are exact: a gate above what was
measured passes, one below fails naming the step, whatever this machine is doing.
The live tests (``test_live.py``) prove the runner produces such documents.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perf.gates import Gates, evaluate

RECORDED = Path(__file__).parent / "recorded"
REPO = Path(__file__).resolve().parents[2]


def recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


def test_the_recorded_short_run_passes_the_default_gates() -> None:
    report = evaluate(recorded("short-run.json"), Gates(max_p99_overhead_ms=50.0))
    assert report.passed, report.text()
    # judged: validity of all 3 modes, error rates of 9 steps (6 rate steps, 3 peaks),
    # p99 overhead of the 3 valid mesh steps
    assert report.checks == 3 + 9 + 3, report.text()


def test_the_recorded_busier_run_fails_the_default_gate_at_that_step_only() -> None:
    report = evaluate(recorded("short-run-busier.json"), Gates(max_p99_overhead_ms=50.0))
    assert report.failures == [
        "direct/l7 at 100 req/s: p99 overhead 66.36 ms > 50 ms (p99 92.38 ms)"]
    assert evaluate(recorded("short-run-busier.json"), Gates(max_p99_overhead_ms=70.0)).passed


def test_an_invalid_step_is_never_judged_for_latency() -> None:
    """L7 at 100 req/s missed its rate: its p99 (113 ms, 91 ms over no mesh) measured the
    load generator's backlog, not the mesh, so even a gate it exceeds leaves it alone."""
    doc = recorded("short-run.json")
    [l7] = [m for m in doc["scenarios"][0]["modes"] if m["mode"] == "l7"]
    invalid = l7["steps"][1]
    assert not invalid["valid"] and invalid["latencies_ms"]["p99"] > 100
    assert evaluate(doc, Gates(max_p99_overhead_ms=48.0)).passed


def test_a_gate_below_the_recorded_l7_overhead_fails_that_step_only() -> None:
    report = evaluate(recorded("short-run.json"), Gates(max_p99_overhead_ms=40.0))
    assert report.failures == [
        "direct/l7 at 50 req/s: p99 overhead 47.29 ms > 40 ms (p99 65.63 ms)"]


def test_a_gate_below_every_recorded_overhead_fails_every_mesh_step() -> None:
    report = evaluate(recorded("short-run.json"), Gates(max_p99_overhead_ms=10.0))
    assert [f.split(":")[0] for f in report.failures] == [
        "direct/l4 at 50 req/s", "direct/l4 at 100 req/s", "direct/l7 at 50 req/s"]


def test_the_throughput_gate_over_the_recorded_peaks() -> None:
    doc = recorded("short-run.json")
    assert evaluate(doc, Gates(min_throughput_ratio=0.4)).passed
    report = evaluate(doc, Gates(min_throughput_ratio=0.5))
    assert report.failures == ["direct/l7: max throughput 47% of no-mesh < 50%"]


def test_the_recorded_injected_slowdown_fails_the_p99_gate() -> None:
    doc = recorded("injected-slowdown.json")
    l4 = doc["scenarios"][0]["modes"][1]
    assert l4["fault"] == {"server_delay_ms": 250.0}
    report = evaluate(doc, Gates(max_p99_overhead_ms=50.0))
    assert not report.passed
    assert report.failures == [
        "direct/l4 at 50 req/s: p99 overhead 371.28 ms > 50 ms (p99 408.96 ms)"]


@pytest.mark.parametrize(("gate", "status"), [("50", 0), ("40", 1)])
def test_perf_check_exits_by_the_gate_over_a_recorded_result(gate: str, status: int) -> None:
    """``python -m perf check``, the command a CI runs on a result file."""
    proc = subprocess.run([sys.executable, "-m", "perf", "check",
                           str(RECORDED / "short-run.json"), "--max-p99-overhead-ms", gate],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert ("SLO gates: PASS" if status == 0 else "SLO gates: FAIL") in proc.stdout
