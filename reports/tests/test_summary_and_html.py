"""The end-of-run summary and the pytest-html fragments, built from a report."""

from __future__ import annotations

from profiles.features import (
    CAPTURE,
    HTTP_ROUTING,
    L4_POLICY,
    MTLS,
    TRAFFIC_SPLIT,
    WAYPOINT,
)
from reports.conformance import build_report
from reports.html import RESULT_COLOURS, profile_table_html, statistics_html
from reports.summary import MAX_FAILED_SHOWN, summary_lines

from .helpers import L4, L7_CORE, rec, run


def _mixed_doc() -> dict:
    records = [
        rec("test_capture", "passed", CAPTURE),
        rec("test_mtls[istio-mesh]", "failed", MTLS),
        rec("test_l4_policy", "skipped", L4_POLICY, skip_kind="exempt"),
        rec("test_waypoint", "passed", WAYPOINT),
        rec("test_split", "passed", TRAFFIC_SPLIT, properties={"n": "1000"}),
        rec("test_fault", "skipped", HTTP_ROUTING, skip_kind="unsupported"),
    ]
    return build_report(run(["AMBIENT-L4", "AMBIENT-L7"], claimed=L4 | L7_CORE,
                            exempt=frozenset({L4_POLICY})), records)


def test_summary_lines_give_verdict_profiles_unsupported_and_failed_tests():
    lines = summary_lines(_mixed_doc())
    assert lines[0].startswith("Conformance result: FAILURE - reference 0.1.0 "
                               "(istio-mesh, istio-waypoint) on local")
    assert lines[1] == ("  AMBIENT-L4  core failure (1 passed, 1 skipped, 1 failed); "
                        "extended not claimed")
    assert lines[2] == ("  AMBIENT-L7  core success (2 passed, 0 skipped, 0 failed); "
                        "extended not claimed")
    assert "Unsupported features: http-routing, l4-policy (exempt)" in lines
    assert lines[-2:] == ["Failed tests (1):", "  test_mtls[istio-mesh] [AMBIENT-L4 core]"]
    assert len(lines) <= 20


def test_summary_of_a_success_is_short_and_lists_no_failures():
    doc = build_report(run(["AMBIENT-L4"], claimed=L4),
                       [rec("test_capture", "passed", CAPTURE), rec("test_mtls", "passed", MTLS)])
    lines = summary_lines(doc)
    assert lines[0].startswith("Conformance result: SUCCESS")
    assert not any("Failed tests" in line or "Unsupported" in line for line in lines)
    assert len(lines) == 2


def test_summary_caps_the_list_of_failed_tests():
    records = [rec(f"test_mtls_{i:02d}", "failed", MTLS) for i in range(MAX_FAILED_SHOWN + 5)]
    lines = summary_lines(build_report(run(["AMBIENT-L4"], claimed=L4), records))
    assert f"Failed tests ({MAX_FAILED_SHOWN + 5}):" in lines
    assert lines[-1] == "  ... and 5 more (see the report)"
    assert len(lines) <= 20


def test_summary_shows_tests_outside_profiles():
    doc = build_report(run(["AMBIENT-L4"], claimed=L4),
                       [rec("test_capture", "passed", CAPTURE), rec("test_sanity", "failed")])
    lines = summary_lines(doc)
    assert "  (no profile)  tests (0 passed, 0 skipped, 1 failed)" in lines
    assert "  test_sanity [no profile]" in lines


def test_profile_table_has_a_coloured_row_per_part():
    html = profile_table_html(_mixed_doc())
    assert html.startswith('<table class="conformance-profiles"')
    assert html.count("<tr>") == 1 + 2 * 2  # header + 2 profiles x core/extended
    assert html.count('rowspan="2"') == 2
    assert f'color:{RESULT_COLOURS["failure"]};font-weight:bold">failure</span>' in html
    assert f'color:{RESULT_COLOURS["success"]};font-weight:bold">success</span>' in html
    assert ">not claimed</span>" in html
    assert "Unsupported features: http-routing, l4-policy (exempt)" in html


def test_profile_table_escapes_everything():
    doc = _mixed_doc()
    doc["profiles"][0]["name"] = "<script>alert(1)</script>"
    doc["profiles"][0]["description"] = 'say "hi" & <b>'
    doc["unsupportedFeatures"] = ["<i>x</i>"]
    html = profile_table_html(doc)
    assert "<script>" not in html and "<i>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'title="say &quot;hi&quot; &amp; &lt;b&gt;"' in html


def test_statistics_html_keeps_order_and_escapes():
    html = statistics_html({"n": "1000", "observed": "v1=<903>", "p_value": "0.74"})
    assert html.startswith('<table class="conformance-statistics"')
    assert html.index(">n<") < html.index(">observed<") < html.index(">p_value<")
    assert "v1=&lt;903&gt;" in html and "<903>" not in html
    assert statistics_html({}) == ""
