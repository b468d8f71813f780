"""The machine-readable conformance report, shaped like Gateway API's ConformanceReport.

Gateway API's report (``conformance/apis/v1``) is what mesh implementers already
publish, so we keep its shape (implementation, profiles with core/extended parts,
``success``/``partial``/``failure``) and add what an ambient run needs: the waypoint
API flavours, exempted features, per-test statistics such as a traffic split's
counts and p-value, and the run's duration.

The rules, and why:

* A test counts under a profile when it needs any of the profile's features, as a
  core test when it needs only core features (:class:`profiles.features.Profile`).
  Tests skipped as ``not-selected`` are left out of every profile: the user did not
  ask about them, so they say nothing about the profiles that were chosen.
* A part (core or extended) fails when any of its tests failed, and is partial when
  any was skipped: a skipped test proves nothing, so it can never count as a pass.
  It succeeds only when everything passed *and* something ran.
* An extended part where nothing ran and none of whose features the implementation
  claims is ``skipped`` ("not claimed"); Gateway API treats extended features as
  optional.  A core part is never ``skipped``: a core part with nothing run is
  ``partial``, because core features are what the profile requires.
* The whole run fails when any test failed anywhere, and is partial when any part is
  partial or any feature of the chosen profiles is unsupported or exempted.  Only a
  run that demonstrated every feature it was asked about is a ``success``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from profiles.features import PROFILES, Profile
from reports.model import PASSED, SKIP_NOT_SELECTED, SKIPPED, RunInfo, TestRecord

API_VERSION = "ambient-harness.dev/v1alpha1"
KIND = "ConformanceReport"
DEFAULT_MODE = "default"
"""Gateway API's name for an implementation run in its default configuration."""

SUCCESS = "success"
PARTIAL = "partial"
FAILURE = "failure"
NOT_CLAIMED = "skipped"
"""The result of an extended part whose features are not claimed and where nothing ran."""


# -- choosing profiles -----------------------------------------------------------------


def selected_profiles(names: Iterable[str]) -> list[Profile]:
    """The profiles named, in the order given; every profile when none is named.

    Mirrors :func:`profiles.features.parse_profiles` (no ``--conformance-profiles``
    means all of them), so the report covers exactly what the run selected.  An unknown
    name raises :class:`ValueError`: a report about a profile we cannot define would
    be misleading.
    """
    wanted = [n.strip().upper() for n in names if n.strip()]
    unknown = [n for n in wanted if n not in PROFILES]
    if unknown:
        raise ValueError(f"unknown profile(s) {', '.join(unknown)}; known: {', '.join(PROFILES)}")
    if not wanted:
        return list(PROFILES.values())
    return [PROFILES[n] for n in dict.fromkeys(wanted)]


# -- tallying --------------------------------------------------------------------------


@dataclass
class _Tally:
    """Outcomes of the tests of one part (or of the tests outside every profile)."""

    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, record: TestRecord) -> None:
        # Anything that is neither passed nor skipped (an "error", a plugin bug) is
        # counted as failed: a conformance report must never turn the unknown into a pass.
        if record.outcome == PASSED:
            self.passed.append(record.name)
        elif record.outcome == SKIPPED:
            self.skipped.append(record.name)
        else:
            self.failed.append(record.name)

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.skipped) + len(self.failed)

    def statistics(self) -> dict[str, int]:
        return {"Passed": len(self.passed), "Skipped": len(self.skipped),
                "Failed": len(self.failed)}


def _part_result(tally: _Tally, *, core: bool, claimed: bool) -> str:
    """A part's result by the rules in the module docstring."""
    if tally.failed:
        return FAILURE
    if not core and not tally.passed and not claimed:
        return NOT_CLAIMED
    if tally.skipped or not tally.passed:
        return PARTIAL
    return SUCCESS


def _in_profiles(record: TestRecord) -> bool:
    return not (record.outcome == SKIPPED and record.skip_kind == SKIP_NOT_SELECTED)


def _part_phrase(label: str, tally: _Tally, result: str) -> str:
    if result == NOT_CLAIMED:
        return f"{label} not claimed"
    if not tally.total:
        return f"{label} {result} (no tests ran)"
    return (f"{label} {result} ({len(tally.passed)} passed, {len(tally.skipped)} skipped, "
            f"{len(tally.failed)} failed)")


def _profile_entry(profile: Profile, records: list[TestRecord], supported: frozenset[str],
                   claimed: frozenset[str]) -> dict[str, Any]:
    core, extended = _Tally(), _Tally()
    for record in records:
        features = frozenset(record.features)
        if profile.covers(features):
            (core if profile.is_core_test(features) else extended).add(record)
    core_result = _part_result(core, core=True, claimed=True)
    # "Claimed", not "supported": an exempted extended feature is still claimed by the
    # implementation, so its skipped tests make the part partial rather than "not claimed".
    extended_result = _part_result(extended, core=False,
                                   claimed=bool(profile.extended & claimed))
    summary = (f"{_part_phrase('Core', core, core_result)}; "
               f"{_part_phrase('extended', extended, extended_result)}.")
    return {
        "name": profile.name,
        "description": profile.description,
        "summary": summary,
        "core": {
            "result": core_result,
            "statistics": core.statistics(),
            "skippedTests": sorted(core.skipped),
            "failedTests": sorted(core.failed),
        },
        "extended": {
            "result": extended_result,
            "statistics": extended.statistics(),
            "supportedFeatures": sorted(profile.extended & supported),
            "unsupportedFeatures": sorted(profile.extended - supported),
            "skippedTests": sorted(extended.skipped),
            "failedTests": sorted(extended.failed),
        },
    }


def _statistics(records: list[TestRecord]) -> list[dict[str, Any]]:
    """Per-test figures (e.g. a traffic split's n, counts, p-value), for tests that have any.

    Property order is kept as the test recorded it: it is the order a reader should see.
    """
    with_props = sorted((r for r in records if r.properties), key=lambda r: (r.name, r.nodeid))
    return [{
        "name": r.name,
        "outcome": r.outcome,
        "features": sorted(r.features),
        "properties": {str(k): str(v) for k, v in r.properties.items()},
    } for r in with_props]


# -- the report ------------------------------------------------------------------------


def build_report(run: RunInfo, records: list[TestRecord], *,
                 mode: str = DEFAULT_MODE) -> dict[str, Any]:
    """The conformance report for one run, as plain dicts, lists and strings (YAML-ready).

    Lists of tests and features are sorted so that the same run gives the same report
    however the tests were ordered or distributed (pytest-xdist).
    """
    profiles = selected_profiles(run.profiles)
    claimed = frozenset(run.claimed_features)
    exempt = frozenset(run.exempt_features)
    supported = claimed - exempt
    selected_features = frozenset().union(*(p.features for p in profiles))

    in_profiles = [r for r in records if _in_profiles(r)]
    profile_entries = [_profile_entry(p, in_profiles, supported, claimed) for p in profiles]

    # Tests that no chosen profile covers but that the plugin did not mark "not-selected"
    # (e.g. a test declaring no feature) are reported apart, so that a failure among them
    # is never invisible.  Their skips do not make the run partial: nobody asked about them.
    other = _Tally()
    for record in in_profiles:
        if not any(p.covers(frozenset(record.features)) for p in profiles):
            other.add(record)

    unsupported = selected_features - supported
    any_failed = other.failed or any(
        e[part]["result"] == FAILURE for e in profile_entries for part in ("core", "extended"))
    any_partial = any(
        e[part]["result"] == PARTIAL for e in profile_entries for part in ("core", "extended"))
    if any_failed:
        result = FAILURE
    elif any_partial or unsupported:
        result = PARTIAL
    else:
        result = SUCCESS

    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "implementation": {
            "organization": run.organization,
            "project": run.implementation,
            "url": run.project_url,
            "version": run.version,
            "contact": list(run.contact),
            "flavours": list(run.flavours),
        },
        "date": run.date,
        "suiteVersion": run.suite_version,
        "cluster": run.cluster,
        "mode": mode,
        "profiles": profile_entries,
        "statistics": _statistics(records),
        "supportedFeatures": sorted(selected_features & supported),
        "unsupportedFeatures": sorted(unsupported),
        "exemptFeatures": sorted(exempt),
    }
    reasons = {f: why for f, why in sorted(run.unsupported_reasons.items())
               if f in unsupported}
    if reasons:
        doc["unsupportedReasons"] = reasons
    if other.total:
        doc["otherTests"] = {
            "statistics": other.statistics(),
            "skippedTests": sorted(other.skipped),
            "failedTests": sorted(other.failed),
        }
    doc["result"] = result
    doc["durationSeconds"] = round(float(run.duration), 3)
    doc["command"] = run.command
    return doc


def all_failed_tests(doc: dict[str, Any]) -> list[str]:
    """Every failed test named in a report, once each, in report order."""
    names: list[str] = []
    for entry in doc.get("profiles", []):
        for part in ("core", "extended"):
            names.extend(entry[part]["failedTests"])
    names.extend(doc.get("otherTests", {}).get("failedTests", []))
    return list(dict.fromkeys(names))


# -- writing ---------------------------------------------------------------------------


def report_filename(doc: dict[str, Any]) -> str:
    """A file name in the spirit of Gateway API's ``<impl-version>-<mode>-report.yaml``.

    The project is included because one output folder may hold several implementations'
    reports; anything unsafe in a file name is replaced.
    """
    impl = doc["implementation"]
    parts = [impl.get("project") or "implementation", impl.get("version") or "unversioned",
             doc.get("mode") or DEFAULT_MODE]
    return "-".join(re.sub(r"[^A-Za-z0-9._]+", "_", p) for p in parts) + "-report.yaml"


def dump_report(doc: dict[str, Any]) -> str:
    """The report as YAML, keys in the builder's order (the order a reader should see)."""
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=100)


def write_report(doc: dict[str, Any], path: str | Path) -> Path:
    """Write the report as YAML at ``path``, creating its folder; return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_report(doc), encoding="utf-8")
    return target
