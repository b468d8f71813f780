"""The HTML report: self-contained, well-formed charts, invalid steps shown not plotted."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from perf.gates import Gates, evaluate
from perf.report_html import render
from perf.svg import bar_chart, line_chart
from perf.tests.helpers import document, mode, record, three_modes


def test_report_is_self_contained_with_inline_svg_charts() -> None:
    doc = three_modes(extra_ms={"l7": 2.0})
    html = render(doc, evaluate(doc, Gates(max_p99_overhead_ms=1.0)))
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?https?:""", html)
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) == 5  # p50, p99, overhead, CPU per 1k, max throughput
    for svg in svgs:
        ET.fromstring(svg)
    assert "overhead vs no mesh" in html and "CPU per 1,000 requests" in html
    assert "SLO gates" in html and "FAIL" in html


def test_invalid_steps_are_listed_with_reasons() -> None:
    doc = document([mode("none", [record(target=100), record(target=400, achieved=200,
                                                              start=2e9)])])
    html = render(doc)
    assert 'class="invalid"' in html and "missed the target rate" in html


def test_charts_escape_labels_and_handle_no_data() -> None:
    svg = line_chart({"<a&b>": [(1, 2.0), (2, 3.0)]}, title="t", x_label="x", y_label="y")
    ET.fromstring(svg)
    assert "&lt;a&amp;b&gt;" in svg
    assert "no valid data" in line_chart({}, title="t", x_label="x", y_label="y")
    ET.fromstring(bar_chart({"m": {"a": 1.0, "b": 0.5}}, title="t", y_label="y"))


def test_axis_ticks_cover_every_value() -> None:
    from perf.svg import _ticks

    for lo, hi in ((0, 19), (-4.2, 18.3), (0, 0.41), (0, 1)):
        ticks = _ticks(lo, hi)
        assert ticks[0] <= lo and ticks[-1] >= hi and len(ticks) <= 8
