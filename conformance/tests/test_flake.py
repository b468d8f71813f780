"""The flake budget tool: what it reads from each run, and a whole (short) budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance import flake
from reports.gate import EXIT_NOT_RUNNABLE

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="4">
<testcase classname="conformance.suite.test_waypoint" name="test_split" time="1.0"/>
<testcase classname="conformance.suite.test_waypoint" name="test_deny" time="1.0">
  <failure message="AssertionError: expected 403, got 200">long text</failure></testcase>
<testcase classname="conformance.suite.test_l4_policy" name="test_l4[x]" time="0.1">
  <skipped type="pytest.skip" message="not claimed">skipped</skipped></testcase>
<testcase classname="conformance.suite.test_enrollment" name="test_label" time="0.1">
  <error message="failed on teardown with &quot;boom&quot;">trace</error></testcase>
</testsuite></testsuites>
"""


def test_junit_outcomes_count_what_ran_and_name_each_failure(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    ran, failures = flake.junit_outcomes(path, run=3)
    assert ran == 3  # the skipped test did not run
    assert failures == [
        flake.Failure(3, "conformance.suite.test_waypoint::test_deny",
                      "AssertionError: expected 403, got 200"),
        flake.Failure(3, "conformance.suite.test_enrollment::test_label",
                      'error: failed on teardown with "boom"'),
    ]


def test_a_missing_junit_file_counts_nothing(tmp_path: Path) -> None:
    assert flake.junit_outcomes(tmp_path / "junit.xml", run=1) == (0, [])


def test_the_summary_gives_both_rates_and_every_failure() -> None:
    bad = flake.Failure(2, "t::test_deny", "AssertionError: expected 403")
    results = [flake.RunResult(1, 0, 60.0, 57), flake.RunResult(2, 1, 70.0, 57, [bad]),
               flake.RunResult(3, 6, 5.0, 0, [], "exit 6: the cluster ... could not run")]
    lines = flake.summary_lines(results)
    assert lines[0] == ("flake budget: 2 of 3 runs failed (66.7%); 1 of 114 tests run "
                        "failed (0.88%)")
    assert "  run 02: t::test_deny: AssertionError: expected 403" in lines
    assert "  1/3 runs: t::test_deny" in lines
    assert "  run 03 exited 6: exit 6: the cluster ... could not run" in lines
    assert lines[-1] == "wall time per run: min 5s, median 60s, max 70s"


@pytest.mark.slow
def test_a_budget_of_runs_that_cannot_start_fails_with_the_reason(tmp_path: Path,
                                                                   capsys) -> None:
    """Two real runs of the main job against a cluster that does not exist: both fail
    (never a pass by not running), each with the reason the run gave."""
    status = flake.main(["--runs", "2", "--out", str(tmp_path), "--",
                         "--cluster", "existing", "--kubeconfig", str(tmp_path / "nothing"),
                         "-k", "test_step1_3_install"])
    out = capsys.readouterr().out
    assert status == 1, out
    assert "flake budget: 2 of 2 runs failed (100.0%)" in out
    assert out.count(f"exited {EXIT_NOT_RUNNABLE}: exit {EXIT_NOT_RUNNABLE}: the cluster or "
                     "the implementation could not run") == 2, out
    assert (tmp_path / "flake.json").is_file()
    assert (tmp_path / "run-01" / "junit.xml").is_file()
