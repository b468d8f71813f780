"""HTML fragments for pytest-html: the profile table and a test's statistics.

The suite's plugin registers the pytest-html hooks; these functions only turn a
report (or one test's recorded properties) into HTML strings, so they are tested
without pytest-html installed.  Every value is escaped: test names carry
parameters, and properties come from whatever the test recorded.  Colours are
inline styles because the fragments are embedded in pytest-html's page, whose
stylesheet we do not control.
"""

from __future__ import annotations

from html import escape
from typing import Any

from reports.conformance import FAILURE, NOT_CLAIMED, PARTIAL, SUCCESS

RESULT_COLOURS: dict[str, str] = {
    SUCCESS: "#1a7f37",
    PARTIAL: "#9a6700",
    FAILURE: "#cf222e",
    NOT_CLAIMED: "#6e7781",
}
"""Foreground colours per result: green, amber, red, grey (readable on white)."""

_CELL = "border:1px solid #d0d7de;padding:2px 8px"


def _result_html(result: str) -> str:
    colour = RESULT_COLOURS.get(result, "#000000")
    label = "not claimed" if result == NOT_CLAIMED else result
    return (f'<span class="conformance-result conformance-{escape(result)}" '
            f'style="color:{colour};font-weight:bold">{escape(label)}</span>')


def _td(content: str, *, raw: bool = False, align: str = "left") -> str:
    body = content if raw else escape(content)
    return f'<td style="{_CELL};text-align:{align}">{body}</td>'


def _th(content: str) -> str:
    return f'<th style="{_CELL};text-align:left">{escape(content)}</th>'


def profile_table_html(doc: dict[str, Any]) -> str:
    """A table of profiles x core/extended x passed/skipped/failed, results coloured.

    Made for pytest-html's summary section; the overall result is the caption, and
    unsupported features follow the table so a reader sees what was not demonstrated.
    """
    rows: list[str] = []
    for entry in doc.get("profiles", []):
        for i, part in enumerate(("core", "extended")):
            data = entry[part]
            stats = data["statistics"]
            profile_cell = (
                f'<td rowspan="2" style="{_CELL}" title="{escape(entry.get("description", ""))}">'
                f"{escape(entry['name'])}</td>" if i == 0 else "")
            rows.append(
                "<tr>" + profile_cell + _td(part) + _td(_result_html(data["result"]), raw=True)
                + "".join(_td(str(stats[k]), align="right")
                          for k in ("Passed", "Skipped", "Failed"))
                + "</tr>")
    caption = (f'<caption style="text-align:left">Conformance: '
               f"{_result_html(doc.get('result', ''))}</caption>")
    head = "<tr>" + "".join(_th(h) for h in
                            ("Profile", "Part", "Result", "Passed", "Skipped", "Failed")) + "</tr>"
    table = (f'<table class="conformance-profiles" style="border-collapse:collapse">{caption}'
             f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>")
    unsupported = doc.get("unsupportedFeatures") or []
    if unsupported:
        exempt = set(doc.get("exemptFeatures") or [])
        items = ", ".join(escape(f) + (" (exempt)" if f in exempt else "") for f in unsupported)
        table += f'<p class="conformance-unsupported">Unsupported features: {items}</p>'
    return table


def statistics_html(properties: dict[str, str]) -> str:
    """A two-column table of one test's recorded statistics (e.g. a traffic split's
    n, observed counts, expected weights, p-value); empty when it recorded none.

    Rows keep the order the test recorded them in, which is the order to read them.
    """
    if not properties:
        return ""
    rows = "".join(f"<tr>{_th(str(k))}{_td(str(v))}</tr>" for k, v in properties.items())
    return (f'<table class="conformance-statistics" style="border-collapse:collapse">'
            f"<tbody>{rows}</tbody></table>")
