"""Which profile a test counts under, and whether as a core test there."""

from __future__ import annotations

import pytest

from profiles import features as F


def test_every_profile_feature_is_known_and_in_one_profile() -> None:
    seen: dict[str, str] = {}
    for profile in F.PROFILES.values():
        assert profile.features | profile.builds_on <= F.ALL_FEATURES
        assert not profile.features & profile.builds_on, profile.name
        for feature in profile.features:
            assert feature not in seen, (feature, seen.get(feature), profile.name)
            seen[feature] = profile.name
    assert set(seen) == F.ALL_FEATURES


def test_a_tool_from_another_profile_keeps_a_test_core() -> None:
    security, l7 = F.PROFILES["AMBIENT-SECURITY"], F.PROFILES["AMBIENT-L7"]
    fail_closed = frozenset({F.WAYPOINT, F.L7_POLICY, F.WAYPOINT_FAIL_CLOSED})
    assert security.covers(fail_closed) and security.is_core_test(fail_closed)
    assert l7.covers(fail_closed) and not l7.is_core_test(fail_closed)
    # needing only the tools does not bring a test into the profile
    assert not security.covers(frozenset({F.L4_POLICY}))
    # an extended feature still makes it an extended test
    assert not security.is_core_test(frozenset({F.CA_IDENTITY_BINDING}))
    resilience = F.PROFILES["AMBIENT-RESILIENCE"]
    assert resilience.is_core_test(frozenset({F.NODE_AGENT_RESTART, F.L4_POLICY}))


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(F.UnknownName, match=r"known: .*policy-recheck"):
        F.parse_features("policy-rechek", option="--exempt-features")
    with pytest.raises(F.UnknownName, match="AMBIENT-RESILIENCE"):
        F.parse_profiles("AMBIENT-FAULTS", option="--profiles")
    assert [p.name for p in F.parse_profiles("ambient-security", option="--profiles")] == [
        "AMBIENT-SECURITY"]
