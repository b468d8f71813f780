"""The benchmark's outputs: the JSON document and the table a person reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = ("pods", "svcs", "data p50", "data p99", "ack p50", "ack p99", "version p50",
           "missed", "istiod RSS", "istiod peak", "ztunnel RSS", "istiod CPU")


def write_json(report: dict[str, Any], path: Path) -> Path:
    """Write the report (parents made), so CI keeps it as an artifact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def table(report: dict[str, Any]) -> str:
    """One row per size: propagation (ms) on the data path and by syncz, memory (MiB)."""
    rows = [COLUMNS]
    for size in report.get("sizes") or ():
        prop = size["propagation"]
        ztunnels = [v for v in (size.get("ztunnel_rss_mib") or {}).values() if v is not None]
        rows.append((
            str(size["pods"]), str(size.get("services", "")),
            _ms(prop["data_path"]["p50_s"]), _ms(prop["data_path"]["p99_s"]),
            _ms(prop["syncz_ack"]["p50_s"]), _ms(prop["syncz_ack"]["p99_s"]),
            _ms(prop["syncz_version"]["p50_s"]),
            f"{prop['data_path']['missed']}/{prop['data_path']['n']}",
            _mib(size.get("istiod_rss_mib")), _mib(size.get("istiod_hwm_mib")),
            _mib(max(ztunnels)) if ztunnels else "-",
            f"{size['istiod_cpu_seconds_during_changes']} s"
            if size.get("istiod_cpu_seconds_during_changes") is not None else "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    verdict = report.get("goal_met")
    goal = report.get("goal") or {}
    if verdict is not None:
        lines.append("")
        lines.append(
            f"goal at {goal.get('at_pods')} pods: propagation p99 <= "
            f"{goal.get('propagation_p99_s')} s: {'met' if verdict['propagation'] else 'MISSED'}"
            f"; istiod RSS <= {goal.get('istiod_rss_bytes', 0) / 1e6:.0f} MB: "
            f"{'met' if verdict['istiod_memory'] else 'MISSED'}")
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} MiB"
