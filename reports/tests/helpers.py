"""Small builders of runs and records for the report tests."""

from __future__ import annotations

from profiles.features import (
    CAPTURE,
    HTTP_ROUTING,
    HTTP_TELEMETRY,
    L4_POLICY,
    L7_POLICY,
    MTLS,
    TCP_TELEMETRY,
    TRAFFIC_SPLIT,
    WAYPOINT,
)
from reports.model import RunInfo, TestRecord

L4 = frozenset({CAPTURE, MTLS, L4_POLICY, TCP_TELEMETRY})
L7_CORE = frozenset({WAYPOINT, L7_POLICY, TRAFFIC_SPLIT, HTTP_TELEMETRY})
L7 = L7_CORE | {HTTP_ROUTING}


def run(profiles: list[str], claimed: frozenset[str], exempt: frozenset[str] = frozenset(),
        **kw: object) -> RunInfo:
    return RunInfo(implementation="reference", version="0.1.0",
                   flavours=["istio-mesh", "istio-waypoint"], organization="ambient-harness",
                   project_url="https://example.invalid/ambient-harness",
                   contact=["@maintainers"], suite_version="0.1.0",
                   date="2026-11-25T12:00:00Z", claimed_features=claimed,
                   exempt_features=exempt, profiles=profiles,
                   command="tox -e conformance", duration=12.3456, **kw)  # type: ignore[arg-type]


def rec(name: str, outcome: str, *features: str, skip_kind: str | None = None,
        properties: dict[str, str] | None = None) -> TestRecord:
    return TestRecord(nodeid=f"conformance/suite/test_x.py::{name}", name=name, outcome=outcome,
                      features=frozenset(features), skip_kind=skip_kind,
                      message="" if outcome == "passed" else f"{outcome}: why",
                      duration=0.5, properties=properties or {})
