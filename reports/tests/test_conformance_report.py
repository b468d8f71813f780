"""The conformance report builder: results by profile part and overall, and the YAML file."""

from __future__ import annotations

import pytest
import yaml

from profiles.features import (
    CAPTURE,
    HTTP_ROUTING,
    INGRESS,
    L4_POLICY,
    L7_POLICY,
    MTLS,
    TCP_TELEMETRY,
    TRAFFIC_SPLIT,
    WALKTHROUGH_TODAY,
    WAYPOINT,
)
from reports.conformance import (
    API_VERSION,
    all_failed_tests,
    build_report,
    dump_report,
    report_filename,
    selected_profiles,
    write_report,
)
from reports.model import TestRecord

from .helpers import L4, L7, L7_CORE, rec, run


def _profile(doc: dict, name: str) -> dict:
    (entry,) = [p for p in doc["profiles"] if p["name"] == name]
    return entry


def _l4_records() -> list[TestRecord]:
    return [
        rec("test_capture", "passed", CAPTURE),
        rec("test_mtls", "passed", MTLS),
        rec("test_l4_policy", "passed", L4_POLICY, CAPTURE),
        rec("test_tcp_metrics", "passed", TCP_TELEMETRY),
    ]


def test_success_when_everything_selected_is_claimed_and_passes():
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), _l4_records())
    entry = _profile(doc, "AMBIENT-L4")
    assert entry["core"] == {"result": "success",
                             "statistics": {"Passed": 4, "Skipped": 0, "Failed": 0},
                             "skippedTests": [], "failedTests": []}
    # AMBIENT-L4 has no extended features: nothing to claim, nothing ran.
    assert entry["extended"]["result"] == "skipped"
    assert entry["extended"]["supportedFeatures"] == []
    assert entry["extended"]["unsupportedFeatures"] == []
    assert doc["result"] == "success"
    assert doc["supportedFeatures"] == sorted(L4)
    assert doc["unsupportedFeatures"] == []
    assert doc["exemptFeatures"] == []
    assert entry["summary"] == "Core success (4 passed, 0 skipped, 0 failed); extended not claimed."


def test_top_level_shape_and_order():
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), _l4_records())
    assert list(doc) == ["apiVersion", "kind", "implementation", "date", "suiteVersion",
                         "cluster", "mode", "profiles", "statistics", "supportedFeatures",
                         "unsupportedFeatures", "exemptFeatures", "result", "durationSeconds",
                         "command"]
    assert doc["apiVersion"] == API_VERSION == "ambient-harness.dev/v1alpha1"
    assert doc["kind"] == "ConformanceReport"
    assert doc["implementation"] == {
        "organization": "ambient-harness", "project": "reference",
        "url": "https://example.invalid/ambient-harness", "version": "0.1.0",
        "contact": ["@maintainers"], "flavours": ["istio-mesh", "istio-waypoint"]}
    assert doc["mode"] == "default"
    assert doc["durationSeconds"] == 12.346
    entry = doc["profiles"][0]
    assert list(entry) == ["name", "description", "summary", "core", "extended"]
    assert list(entry["extended"]) == ["result", "statistics", "supportedFeatures",
                                       "unsupportedFeatures", "skippedTests", "failedTests"]
    assert build_report(run(["AMBIENT-L4"], claimed=L4), [], mode="cni")["mode"] == "cni"


def test_the_clusters_reasons_for_unsupported_features_are_reported():
    """A feature the implementation claims but the run's cluster cannot give it is
    unsupported with the reason; a reason for a feature outside the profiles is not
    reported, as that feature is not either."""
    why = "no Envoy on this cluster"
    records = [rec("test_waypoint", "skipped", WAYPOINT, skip_kind="unsupported")]
    doc = build_report(run(["AMBIENT-L7"], claimed=frozenset({L7_POLICY}),
                           unsupported_reasons={WAYPOINT: why, CAPTURE: "unrelated"}), records)
    assert doc["unsupportedReasons"] == {WAYPOINT: why}
    assert WAYPOINT in doc["unsupportedFeatures"]
    assert "unsupportedReasons" not in build_report(run(["AMBIENT-L4"], claimed=L4),
                                                    _l4_records())


def test_exempt_feature_makes_profile_and_run_partial():
    records = [
        *[r for r in _l4_records() if L4_POLICY not in r.features],
        rec("test_l4_policy", "skipped", L4_POLICY, CAPTURE, skip_kind="exempt"),
    ]
    doc = build_report(run(["AMBIENT-L4"], claimed=L4, exempt=frozenset({L4_POLICY})), records)
    core = _profile(doc, "AMBIENT-L4")["core"]
    assert core["result"] == "partial"
    assert core["statistics"] == {"Passed": 3, "Skipped": 1, "Failed": 0}
    assert core["skippedTests"] == ["test_l4_policy"]
    assert doc["result"] == "partial"
    assert doc["unsupportedFeatures"] == [L4_POLICY]
    assert doc["exemptFeatures"] == [L4_POLICY]
    assert L4_POLICY not in doc["supportedFeatures"]


def test_any_failure_fails_the_part_and_the_run():
    records = [*_l4_records()[:3], rec("test_tcp_metrics", "failed", TCP_TELEMETRY)]
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), records)
    core = _profile(doc, "AMBIENT-L4")["core"]
    assert core["result"] == "failure"
    assert core["failedTests"] == ["test_tcp_metrics"]
    assert core["statistics"] == {"Passed": 3, "Skipped": 0, "Failed": 1}
    assert doc["result"] == "failure"
    assert all_failed_tests(doc) == ["test_tcp_metrics"]


def test_failure_wins_over_skips():
    records = [rec("test_capture", "skipped", CAPTURE, skip_kind="unavailable"),
               rec("test_mtls", "failed", MTLS)]
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), records)
    assert _profile(doc, "AMBIENT-L4")["core"]["result"] == "failure"
    assert doc["result"] == "failure"


def test_unknown_outcome_counts_as_failed_never_passed():
    doc = build_report(run(["AMBIENT-L4"], claimed=L4),
                       [*_l4_records()[:3], rec("test_tcp_metrics", "error", TCP_TELEMETRY)])
    assert _profile(doc, "AMBIENT-L4")["core"]["failedTests"] == ["test_tcp_metrics"]
    assert doc["result"] == "failure"


def test_profile_without_claimed_extended_features():
    records = [
        rec("test_waypoint", "passed", WAYPOINT),
        rec("test_l7_policy", "passed", L7_POLICY, WAYPOINT),
        rec("test_split", "passed", TRAFFIC_SPLIT, WAYPOINT),
        rec("test_fault", "skipped", HTTP_ROUTING, WAYPOINT, skip_kind="unsupported"),
    ]
    doc = build_report(run(["AMBIENT-L7"], claimed=L7_CORE), records)
    entry = _profile(doc, "AMBIENT-L7")
    assert entry["core"]["result"] == "success"
    ext = entry["extended"]
    assert ext["result"] == "skipped"
    assert ext["statistics"] == {"Passed": 0, "Skipped": 1, "Failed": 0}
    assert ext["skippedTests"] == ["test_fault"]
    assert ext["supportedFeatures"] == []
    assert ext["unsupportedFeatures"] == [HTTP_ROUTING]
    assert entry["summary"].endswith("; extended not claimed.")
    # Every feature of the chosen profiles must be demonstrated for a success.
    assert doc["unsupportedFeatures"] == [HTTP_ROUTING]
    assert doc["result"] == "partial"


def test_claimed_extended_feature_with_skips_is_partial_and_exempt_counts_as_claimed():
    records = [rec("test_waypoint", "passed", WAYPOINT),
               rec("test_fault", "skipped", HTTP_ROUTING, WAYPOINT, skip_kind="exempt"),
               rec("test_header", "skipped", HTTP_ROUTING, WAYPOINT, skip_kind="exempt")]
    doc = build_report(run(["AMBIENT-L7"], claimed=L7, exempt=frozenset({HTTP_ROUTING})),
                       records)
    ext = _profile(doc, "AMBIENT-L7")["extended"]
    assert ext["result"] == "partial"
    assert ext["skippedTests"] == ["test_fault", "test_header"]
    assert ext["unsupportedFeatures"] == [HTTP_ROUTING]
    assert doc["result"] == "partial"


def test_claimed_extended_features_all_passing_is_success():
    records = [rec("test_waypoint", "passed", WAYPOINT),
               rec("test_fault", "passed", HTTP_ROUTING, WAYPOINT)]
    doc = build_report(run(["AMBIENT-L7"], claimed=L7), records)
    entry = _profile(doc, "AMBIENT-L7")
    assert entry["extended"]["result"] == "success"
    assert entry["extended"]["supportedFeatures"] == [HTTP_ROUTING]
    assert entry["extended"]["unsupportedFeatures"] == []
    assert doc["result"] == "success"


def test_core_part_with_everything_skipped_is_partial_never_success():
    records = [rec(r.name, "skipped", *r.features, skip_kind="unavailable")
               for r in _l4_records()]
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), records)
    assert _profile(doc, "AMBIENT-L4")["core"]["result"] == "partial"
    assert doc["result"] == "partial"


def test_core_part_with_nothing_run_is_partial():
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), [])
    entry = _profile(doc, "AMBIENT-L4")
    assert entry["core"]["result"] == "partial"
    assert entry["summary"].startswith("Core partial (no tests ran)")
    assert doc["result"] == "partial"


def test_not_selected_tests_are_left_out_of_every_profile():
    records = [*_l4_records(),
               rec("test_waypoint", "skipped", WAYPOINT, skip_kind="not-selected"),
               rec("test_mtls_extra", "skipped", MTLS, skip_kind="not-selected")]
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), records)
    core = _profile(doc, "AMBIENT-L4")["core"]
    assert core["statistics"] == {"Passed": 4, "Skipped": 0, "Failed": 0}
    assert [p["name"] for p in doc["profiles"]] == ["AMBIENT-L4"]
    assert "otherTests" not in doc
    assert doc["result"] == "success"


def test_test_counts_under_every_profile_it_covers_as_core_or_extended():
    # Needs WALKTHROUGH's core feature and L7's core feature: extended in both profiles.
    both = rec("test_walkthrough_waypoint", "passed", WALKTHROUGH_TODAY, WAYPOINT)
    doc = build_report(run(["AMBIENT-L7", "walkthrough"], claimed=L7 | {WALKTHROUGH_TODAY}),
                       [both, rec("test_waypoint", "passed", WAYPOINT)])
    l7, walk = _profile(doc, "AMBIENT-L7"), _profile(doc, "WALKTHROUGH")
    assert l7["core"]["statistics"]["Passed"] == 1
    assert l7["extended"]["statistics"]["Passed"] == 1
    assert walk["core"]["statistics"]["Passed"] == 0
    assert walk["extended"]["statistics"]["Passed"] == 1


def test_tests_outside_every_profile_are_reported_apart():
    records = [*_l4_records(), rec("test_harness_sanity", "failed"),
               rec("test_ingress", "skipped", INGRESS, skip_kind="unsupported")]
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), records)
    assert doc["otherTests"] == {"statistics": {"Passed": 0, "Skipped": 1, "Failed": 1},
                                 "skippedTests": ["test_ingress"],
                                 "failedTests": ["test_harness_sanity"]}
    assert doc["result"] == "failure"
    assert all_failed_tests(doc) == ["test_harness_sanity"]
    # A skip nobody asked about does not make the run partial.
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), records[:-2] + records[-1:])
    assert doc["result"] == "success"


def test_properties_pass_through_into_statistics_in_recorded_order():
    props = {"n": "1000", "expected": "reviews-v1=0.9,reviews-v2=0.1",
             "observed": "reviews-v1=903,reviews-v2=97", "p_value": "0.74", "alpha": "0.001"}
    records = [rec("test_waypoint", "passed", WAYPOINT),
               rec("test_split[90-10]", "passed", TRAFFIC_SPLIT, WAYPOINT, properties=props)]
    doc = build_report(run(["AMBIENT-L7"], claimed=L7_CORE), records)
    assert doc["statistics"] == [{"name": "test_split[90-10]", "outcome": "passed",
                                  "features": [TRAFFIC_SPLIT, WAYPOINT], "properties": props}]
    assert list(doc["statistics"][0]["properties"]) == list(props)


def test_report_is_independent_of_record_order():
    records = [*_l4_records(), rec("test_zz", "failed", MTLS), rec("test_aa", "failed", MTLS)]
    first = build_report(run(["AMBIENT-L4"], claimed=L4), records)
    second = build_report(run(["AMBIENT-L4"], claimed=L4), records[::-1])
    assert first == second
    assert _profile(first, "AMBIENT-L4")["core"]["failedTests"] == ["test_aa", "test_zz"]


def test_profiles_default_to_all_and_unknown_names_are_refused():
    assert [p.name for p in selected_profiles([])] == ["AMBIENT-L4", "AMBIENT-L7", "WALKTHROUGH",
                                                       "AMBIENT-SECURITY", "AMBIENT-RESILIENCE"]
    assert [p.name for p in selected_profiles(["ambient-l7", "AMBIENT-L7"])] == ["AMBIENT-L7"]
    with pytest.raises(ValueError, match="NOPE"):
        build_report(run(["nope"], claimed=L4), [])


def test_yaml_round_trip_keeps_content_and_key_order(tmp_path):
    records = [*_l4_records()[:3],
               rec("test_tcp_metrics", "skipped", TCP_TELEMETRY, skip_kind="exempt"),
               rec("test_split", "passed", TRAFFIC_SPLIT, properties={"n": "500", "p": "0.3"})]
    doc = build_report(run(["AMBIENT-L4", "AMBIENT-L7"], claimed=L4 | L7,
                           exempt=frozenset({TCP_TELEMETRY})), records)
    path = write_report(doc, tmp_path / "out" / "nested" / report_filename(doc))
    assert path.name == "reference-0.1.0-default-report.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"apiVersion: {API_VERSION}\nkind: ConformanceReport\n")
    assert text == dump_report(doc)
    loaded = yaml.safe_load(text)
    assert loaded == doc
    assert list(loaded) == list(doc)
    assert list(loaded["profiles"][0]["core"]) == list(doc["profiles"][0]["core"])


def test_report_filename_is_safe():
    doc = build_report(run(["AMBIENT-L4"], claimed=L4), [])
    doc["implementation"]["version"] = "1.2/rc 1"
    assert report_filename(doc) == "reference-1.2_rc_1-default-report.yaml"
