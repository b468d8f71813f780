"""The few lines printed at the end of a conformance run.

The YAML report is the record; this is what a person reads in the terminal, so it
says the verdict first, then one line per profile, then what was not demonstrated
(unsupported features) and what went wrong (failed tests).  It is built from the
report document alone, so the terminal never disagrees with the file.
"""

from __future__ import annotations

from typing import Any

from reports.conformance import NOT_CLAIMED, all_failed_tests

MAX_FAILED_SHOWN = 8
"""Failed tests listed by name; more are counted, not listed, to keep the summary short."""


def _counts(statistics: dict[str, int]) -> str:
    return (f"({statistics['Passed']} passed, {statistics['Skipped']} skipped, "
            f"{statistics['Failed']} failed)")


def _part(label: str, part: dict[str, Any]) -> str:
    if part["result"] == NOT_CLAIMED:
        return f"{label} not claimed"
    return f"{label} {part['result']} {_counts(part['statistics'])}"


def _where_failed(doc: dict[str, Any]) -> dict[str, list[str]]:
    """For each failed test, the profile parts it failed in (e.g. ``AMBIENT-L7 core``)."""
    where: dict[str, list[str]] = {}
    for entry in doc.get("profiles", []):
        for part in ("core", "extended"):
            for name in entry[part]["failedTests"]:
                where.setdefault(name, []).append(f"{entry['name']} {part}")
    for name in doc.get("otherTests", {}).get("failedTests", []):
        where.setdefault(name, []).append("no profile")
    return where


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """A short text summary of a report built by :func:`reports.conformance.build_report`.

    The caller adds where the report files were written.
    """
    impl = doc["implementation"]
    flavours = ", ".join(impl.get("flavours") or []) or "no waypoint flavour"
    lines = [
        f"Conformance result: {doc['result'].upper()} - {impl['project']} {impl['version']} "
        f"({flavours}) on {doc.get('cluster', '?')}, {doc.get('durationSeconds', 0):.1f}s",
    ]
    other_label = "(no profile)"
    names = [e["name"] for e in doc.get("profiles", [])]
    width = max(map(len, [*names, other_label] if doc.get("otherTests") else names), default=0)
    for entry in doc.get("profiles", []):
        lines.append(f"  {entry['name']:<{width}}  {_part('core', entry['core'])}; "
                     f"{_part('extended', entry['extended'])}")
    if doc.get("otherTests"):
        lines.append(f"  {other_label:<{width}}  tests "
                     f"{_counts(doc['otherTests']['statistics'])}")
    exempt = set(doc.get("exemptFeatures", []))
    unsupported = [f + (" (exempt)" if f in exempt else "")
                   for f in doc.get("unsupportedFeatures", [])]
    if unsupported:
        lines.append(f"Unsupported features: {', '.join(unsupported)}")
    failed = all_failed_tests(doc)
    if failed:
        where = _where_failed(doc)
        lines.append(f"Failed tests ({len(failed)}):")
        lines.extend(f"  {name} [{', '.join(where.get(name, []))}]"
                     for name in failed[:MAX_FAILED_SHOWN])
        if len(failed) > MAX_FAILED_SHOWN:
            lines.append(f"  ... and {len(failed) - MAX_FAILED_SHOWN} more (see the report)")
    return lines
