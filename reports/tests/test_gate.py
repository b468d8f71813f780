"""The main job's exit status: never 0 for a run that did not demonstrate what it claims."""

from __future__ import annotations

import pytest

from profiles.features import CAPTURE, HTTP_ROUTING, L4_POLICY, MTLS, WAYPOINT
from reports.gate import (
    EXIT_NO_TEST_RAN,
    EXIT_NOT_RUNNABLE,
    EXIT_OK,
    EXIT_TESTS_FAILED,
    EXIT_UNEXPLAINED_SKIPS,
    MAX_LISTED,
    decide,
)

from .helpers import rec

PASSING = [rec("test_capture", "passed", CAPTURE), rec("test_waypoint", "passed", WAYPOINT)]


def test_everything_passed_exits_0():
    v = decide(PASSING, pytest_status=0, result="success")
    assert v.status == EXIT_OK
    assert v.headline == "exit 0: 2 tests ran and passed"


@pytest.mark.parametrize("kind", ["unsupported", "exempt", "named", "not-selected"])
def test_a_skip_by_choice_exits_0_and_says_partial_only_by_choice(kind):
    records = [*PASSING, rec("test_fault", "skipped", HTTP_ROUTING, skip_kind=kind)]
    v = decide(records, pytest_status=0, result="partial")
    assert v.status == EXIT_OK
    assert v.headline.startswith("exit 0: PARTIAL only by choice")
    assert "2 tests ran and passed; 1 test skipped by choice" in v.headline


def test_partial_without_a_skipped_test_still_says_why_it_exits_0():
    """An unclaimed feature with no test among those selected: partial, by choice."""
    v = decide(PASSING, pytest_status=0, result="partial")
    assert v.status == EXIT_OK and "PARTIAL only by choice" in v.headline


def test_a_cluster_that_cannot_run_is_never_a_pass():
    records = [rec("test_capture", "skipped", CAPTURE, skip_kind="unavailable"),
               rec("test_waypoint", "skipped", WAYPOINT, skip_kind="unavailable")]
    why = "cluster provider 'local' cannot run here: the local cluster's nodes need nft"
    v = decide(records, pytest_status=0, not_runnable=why, result="partial")
    assert v.status == EXIT_NOT_RUNNABLE
    assert v.headline.endswith(why)


def test_a_failed_bring_up_outranks_the_failures_it_caused():
    records = [rec("test_capture", "failed", CAPTURE)]
    v = decide(records, pytest_status=1, not_runnable="setting up the cluster and mesh failed")
    assert v.status == EXIT_NOT_RUNNABLE


def test_a_failure_exits_1_even_beside_unexplained_skips():
    records = [*PASSING, rec("test_mtls", "failed", MTLS),
               rec("test_l4_policy", "skipped", L4_POLICY, skip_kind="other")]
    v = decide(records, pytest_status=1, result="failure")
    assert (v.status, v.headline) == (EXIT_TESTS_FAILED, "exit 1: 1 test failed")


def test_an_error_outcome_counts_as_a_failure():
    v = decide([*PASSING, rec("test_mtls", "error", MTLS)], pytest_status=1)
    assert v.status == EXIT_TESTS_FAILED


def test_a_test_that_skipped_itself_in_a_claimed_feature_fails_the_run():
    skipped = rec("test_mtls", "skipped", MTLS, skip_kind="other")
    v = decide([*PASSING, skipped], pytest_status=0, result="partial")
    assert v.status == EXIT_UNEXPLAINED_SKIPS
    assert v.details == [f"  {skipped.nodeid}: skipped: why"]


def test_an_unclassified_skip_counts_as_unexplained():
    v = decide([*PASSING, rec("test_mtls", "skipped", MTLS)], pytest_status=0)
    assert v.status == EXIT_UNEXPLAINED_SKIPS


def test_many_unexplained_skips_are_listed_up_to_a_limit():
    records = [rec(f"test_{i:02}", "skipped", MTLS, skip_kind="other") for i in range(15)]
    v = decide([*PASSING, *records], pytest_status=0)
    assert len(v.details) == MAX_LISTED + 1
    assert v.details[-1] == f"  ... and {15 - MAX_LISTED} more (see the report)"


def test_nothing_collected_exits_5():
    v = decide([], pytest_status=5)
    assert (v.status, v.headline) == (EXIT_NO_TEST_RAN,
                                      "exit 5: no test ran (none collected or selected)")


def test_every_test_skipped_by_choice_is_still_no_test_run():
    records = [rec("test_capture", "skipped", CAPTURE, skip_kind="exempt"),
               rec("test_waypoint", "skipped", WAYPOINT, skip_kind="unsupported")]
    v = decide(records, pytest_status=0, result="partial")
    assert v.status == EXIT_NO_TEST_RAN
    assert v.headline == ("exit 5: no test ran (2 tests skipped: 1 exempted feature, "
                          "1 not claimed)")


@pytest.mark.parametrize("status", [2, 3, 4])
def test_pytests_own_trouble_is_kept(status):
    v = decide(PASSING, pytest_status=status, not_runnable="cannot run")
    assert v.status == status


def test_an_unexplained_pytest_failure_status_is_never_turned_into_0():
    assert decide(PASSING, pytest_status=1).status == 1
