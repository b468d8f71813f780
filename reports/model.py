"""What the conformance suite's pytest plugin records, and what the report builders read.

The plugin (``conformance``'s pytest plugin) collects one :class:`TestRecord` per test
and one :class:`RunInfo` per run, then calls the builders in :mod:`reports.conformance`,
:mod:`reports.summary` and :mod:`reports.html`.  Keeping these plain dataclasses, free
of pytest objects, lets the builders be pure functions tested without running a suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
OUTCOMES: frozenset[str] = frozenset({PASSED, FAILED, SKIPPED})
"""The outcomes a record may carry; the builders count anything else as failed."""

SKIP_UNSUPPORTED = "unsupported"
"""A feature the test needs is not claimed by the implementation."""
SKIP_EXEMPT = "exempt"
"""The user exempted a feature the test needs (``--exempt-features``)."""
SKIP_NOT_SELECTED = "not-selected"
"""The test lies outside the chosen profiles; it is left out of the report's profiles."""
SKIP_UNAVAILABLE = "unavailable"
"""The environment cannot run the test (e.g. no ingress gateway on this cluster)."""
SKIP_NAMED = "named"
"""The user named the test in ``--skip-tests``: an exemption by name."""
SKIP_OTHER = "other"
"""Anything else: the test skipped itself (e.g. the provider cannot capture traffic)."""
SKIP_KINDS: frozenset[str] = frozenset({
    SKIP_UNSUPPORTED, SKIP_EXEMPT, SKIP_NOT_SELECTED, SKIP_UNAVAILABLE, SKIP_NAMED, SKIP_OTHER,
})


@dataclass
class TestRecord:
    """One test's outcome, as the plugin saw it at the end of the test."""

    # Not a test class, though its name starts with "Test": keep pytest from collecting it
    # (and warning) in every test module that imports it.
    __test__ = False

    nodeid: str
    name: str                  # the test's short name, e.g. "test_step7_l4_policy[istio-mesh]"
    outcome: str               # "passed" | "failed" | "skipped"
    features: frozenset[str]   # the features the test declared
    skip_kind: str | None = None   # for skipped: "unsupported" (feature not claimed by the
                                   # implementation), "exempt" (user exempted a feature),
                                   # "not-selected" (outside the chosen profiles), "unavailable"
                                   # (environment cannot run it), "named" (--skip-tests),
                                   # "other" (the test skipped itself)
    message: str = ""          # skip reason or the failure's first line
    duration: float = 0.0
    properties: dict[str, str] = field(default_factory=dict)  # e.g. traffic-split statistics


@dataclass
class RunInfo:
    """The run as a whole: who was tested, with what claims, chosen how."""

    implementation: str        # adapter/implementation name, e.g. "reference"
    version: str
    flavours: list[str]        # waypoint API flavours claimed, e.g. ["istio-mesh","istio-waypoint"]
    organization: str = ""
    project_url: str = ""
    contact: list[str] = field(default_factory=list)
    cluster: str = "local"
    suite_version: str = ""
    date: str = ""             # ISO 8601
    claimed_features: frozenset[str] = frozenset()
    exempt_features: frozenset[str] = frozenset()
    # Features the implementation claims but the cluster of this run cannot give it
    unsupported_reasons: dict[str, str] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)  # names of the selected profiles
    command: str = ""
    duration: float = 0.0
