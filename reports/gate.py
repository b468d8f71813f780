"""The main job's exit status: a CI gate never passes by not running.

pytest's own status says whether a test *failed*.  It counts a skip as harmless, so a
run where the cluster could not start and every test skipped, saying why, exits 0;
so does a run where a claimed feature's test skipped itself because this provider
cannot do what it needs.  Neither demonstrated anything, so neither may let a build
through.  This module decides the status from what the run recorded; it is a pure
function so the rules are tested without running a suite.

The rules, in the order they are applied (the first that matches decides):

* pytest's own trouble (2 interrupted or collection errors, 3 internal error,
  4 usage error) is kept as pytest said it.
* **6** the cluster or the implementation could not run here (the provider is
  unavailable, the cluster did not come up, the implementation would not install);
  the reason is printed at the end.
* **1** a test failed (pytest's own code).
* **5** no test ran: none was collected or selected, or every one was skipped
  (pytest's ``NO_TESTS_COLLECTED``, widened to "nothing ran").
* **7** a test was skipped for any reason other than its feature not being claimed
  or being exempted: the test skipped itself (e.g. the provider cannot capture a
  node's traffic), or anything the plugin did not classify.
* **0** everything that ran passed, and every skip was by choice: a feature the
  implementation does not claim, a feature or test the user exempted
  (``--exempt-features``, ``--skip-tests``), or a test outside the chosen profiles.
  The report's result may then be ``partial``; the verdict line says that it is,
  and why that still exits 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from reports.model import (
    PASSED,
    SKIP_EXEMPT,
    SKIP_NAMED,
    SKIP_NOT_SELECTED,
    SKIP_UNSUPPORTED,
    SKIPPED,
    TestRecord,
)

EXIT_OK = 0
EXIT_TESTS_FAILED = 1
EXIT_NO_TEST_RAN = 5
EXIT_NOT_RUNNABLE = 6
EXIT_UNEXPLAINED_SKIPS = 7
PYTEST_OWN = {2: "interrupted, or errors during collection", 3: "pytest internal error",
              4: "usage error"}
"""pytest's statuses that say the run itself broke; kept as they are."""

CHOSEN_SKIPS: dict[str, str] = {
    SKIP_UNSUPPORTED: "not claimed",
    SKIP_EXEMPT: "exempted feature",
    SKIP_NAMED: "named in --skip-tests",
    SKIP_NOT_SELECTED: "outside the chosen profiles",
}
"""Skips that are a choice (the implementation's or the user's), never the environment's."""

MAX_LISTED = 10
"""Unexplained skips listed by name and reason; more are counted."""


@dataclass(frozen=True)
class Verdict:
    status: int
    headline: str
    """One line for the end of the run: the status and the reason for it."""
    details: list[str] = field(default_factory=list)
    """Lines that back the headline (e.g. each unexplained skip with its reason)."""

    def lines(self) -> list[str]:
        return [self.headline, *self.details]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _skip_counts(skipped: Iterable[TestRecord]) -> str:
    counts = Counter(CHOSEN_SKIPS.get(r.skip_kind or "", r.skip_kind or "other")
                     for r in skipped)
    return ", ".join(f"{n} {why}" for why, n in sorted(counts.items()))


def decide(records: Iterable[TestRecord], *, pytest_status: int,
           not_runnable: str | None = None, result: str | None = None) -> Verdict:
    """The exit status of a conformance run, by the rules in the module docstring.

    ``records`` are the run's tests as the plugin recorded them, ``pytest_status`` is
    what pytest would exit with, ``not_runnable`` why the cluster or implementation
    could not run (None when it could), ``result`` the conformance report's result
    (``success``/``partial``/``failure``; None when no report was written).
    """
    records = list(records)
    if pytest_status in PYTEST_OWN:
        return Verdict(pytest_status,
                       f"exit {pytest_status}: {PYTEST_OWN[pytest_status]} (pytest's status)")
    if not_runnable:
        return Verdict(EXIT_NOT_RUNNABLE, f"exit {EXIT_NOT_RUNNABLE}: the cluster or the "
                       f"implementation could not run: {not_runnable}")
    passed = [r for r in records if r.outcome == PASSED]
    skipped = [r for r in records if r.outcome == SKIPPED]
    failed = [r for r in records if r.outcome not in (PASSED, SKIPPED)]
    if failed:
        return Verdict(EXIT_TESTS_FAILED,
                       f"exit {EXIT_TESTS_FAILED}: {_plural(len(failed), 'test')} failed")
    if not passed:
        why = f" ({_plural(len(skipped), 'test')} skipped: {_skip_counts(skipped)})" \
            if skipped else " (none collected or selected)"
        return Verdict(EXIT_NO_TEST_RAN, f"exit {EXIT_NO_TEST_RAN}: no test ran{why}")
    unexplained = [r for r in skipped if r.skip_kind not in CHOSEN_SKIPS]
    if unexplained:
        listed = sorted(unexplained, key=lambda r: r.nodeid)
        details = [f"  {r.nodeid}: {r.message or 'skipped'}" for r in listed[:MAX_LISTED]]
        if len(listed) > MAX_LISTED:
            details.append(f"  ... and {len(listed) - MAX_LISTED} more (see the report)")
        return Verdict(EXIT_UNEXPLAINED_SKIPS,
                       f"exit {EXIT_UNEXPLAINED_SKIPS}: {_plural(len(unexplained), 'test')} "
                       "skipped for a reason other than an unclaimed or exempted feature; a "
                       "skipped test demonstrates nothing:", details)
    if pytest_status != EXIT_OK:
        # Nothing recorded explains it (e.g. a failure outside any test): keep pytest's.
        return Verdict(pytest_status, f"exit {pytest_status}: pytest's status")
    ran = f"{_plural(len(passed), 'test')} ran and passed"
    chosen = (f"; {_plural(len(skipped), 'test')} skipped by choice ({_skip_counts(skipped)})"
              if skipped else "")
    if result == "partial":
        return Verdict(EXIT_OK, f"exit {EXIT_OK}: PARTIAL only by choice (features not claimed "
                       f"or exempted, tests not selected): {ran}{chosen}")
    return Verdict(EXIT_OK, f"exit {EXIT_OK}: {ran}{chosen}")
