"""The HTML report of a result document: one self-contained file, charts inline as SVG.

It shows what the JSON holds, for a human: latency percentiles against load per
mode, the overhead over the no-mesh baseline, CPU per 1,000 requests per
component, maximum throughput, and every step in a table, with invalid steps
shown (greyed, with their reasons) but never plotted.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from perf.components import MESH_COMPONENT_NAMES
from perf.gates import GateReport
from perf.svg import bar_chart, line_chart

CSS = """
body{font-family:sans-serif;margin:24px;color:#1f2328;max-width:1300px}
table{border-collapse:collapse;margin:8px 0 18px;font-size:12px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right}
th{background:#f6f8fa}td.l,th.l{text-align:left}
tr.invalid td{color:#8c959f;background:#fafafa}
.fail{color:#cf222e;font-weight:bold}.ok{color:#1a7f37;font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:12px}.note{color:#57606a;font-size:12px}
"""


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _valid_steps(mode: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in mode.get("steps") or () if s.get("valid")]


def _charts(scenario: Mapping[str, Any]) -> str:
    modes = scenario.get("modes") or []
    charts = []
    # By order of appearance: none, l4, l7 as ever, then another implementation's modes.
    colour = {m["label"]: i for i, m in enumerate(modes)}
    for pct in ("p50", "p99"):
        charts.append(line_chart(
            {m["label"]: [(s["target_rps"], s["latencies_ms"][pct]) for s in _valid_steps(m)
                          if s["latencies_ms"][pct] is not None] for m in modes},
            title=f"{scenario['name']}: {pct} latency vs load", x_label="target req/s",
            y_label=f"{pct} ms", styles={label: (c, 0) for label, c in colour.items()}))
    overhead = {}
    styles = {}
    for m in modes:
        for di, pct in enumerate(("p50", "p99")):
            pts = [(s["target_rps"], s["overhead_ms"][pct]) for s in _valid_steps(m)
                   if s.get("overhead_ms") and s["overhead_ms"].get(pct) is not None]
            if pts:
                overhead[f"{m['label']} {pct}"] = pts
                styles[f"{m['label']} {pct}"] = (colour[m["label"]], di)
    charts.append(line_chart(overhead, title=f"{scenario['name']}: overhead vs no mesh",
                             x_label="target req/s", y_label="added ms", zero_line=True,
                             styles=styles))
    cpu: dict[str, dict[str, float]] = {}
    for m in modes:
        per: dict[str, list[float]] = {}
        for s in _valid_steps(m):
            for name, u in (s.get("components") or {}).items():
                v = u.get("cpu_seconds_per_1k_requests") if u.get("available") else None
                if v is not None and name in MESH_COMPONENT_NAMES:
                    per.setdefault(name, []).append(v)
        cpu[m["label"]] = {k: sum(v) / len(v) for k, v in per.items()}
    charts.append(bar_chart(cpu, title=f"{scenario['name']}: component CPU per 1,000 requests "
                            "(mean over valid steps)", y_label="CPU seconds / 1k req"))
    peaks = {m["label"]: {"req/s": m["max_throughput"]["actual_qps"]} for m in modes
             if m.get("max_throughput") and m["max_throughput"].get("valid")}
    charts.append(bar_chart(peaks, title=f"{scenario['name']}: maximum throughput",
                            y_label="req/s"))
    return '<div class="charts">' + "".join(f"<div>{c}</div>" for c in charts) + "</div>"


def _component_cells(step: Mapping[str, Any]) -> str:
    cells = []
    for name in MESH_COMPONENT_NAMES:
        u = (step.get("components") or {}).get(name)
        if not u:
            cells.append("<td>&ndash;</td><td>&ndash;</td><td>&ndash;</td>")
        elif not u.get("available"):
            cells.append(f'<td colspan="3" class="l note">{escape(u.get("reason", ""))}</td>')
        else:
            cells.append(f"<td>{_f(u['cpu_cores'], 3)}</td>"
                         f"<td>{_f(u.get('cpu_seconds_per_1k_requests'), 3)}</td>"
                         f"<td>{_f(u['mem_mb_avg'], 1)}</td>")
    return "".join(cells)


def _steps_table(scenario: Mapping[str, Any]) -> str:
    comp_heads = "".join(f'<th colspan="3">{n}<br>cores &middot; s/1k &middot; MiB</th>'
                         for n in MESH_COMPONENT_NAMES)
    rows = ["<table><tr><th class=l>mode</th><th>step</th><th>req/s</th><th>users</th>"
            "<th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th>"
            f"<th>+p50</th><th>+p99</th>{comp_heads}<th>loadgen<br>peak cores</th>"
            "<th class=l>validity</th></tr>"]
    for m in scenario.get("modes") or ():
        if m.get("status") != "ran":
            rows.append(f'<tr><td class=l>{escape(m["label"])}</td><td colspan="22" '
                        f'class="l fail">{escape(m["status"])}: {escape(str(m.get("reason")))}'
                        "</td></tr>")
            continue
        for s in [*(m.get("steps") or ()), *([m["max_throughput"]] if m.get("max_throughput")
                                               else [])]:
            lat, over = s["latencies_ms"], s.get("overhead_ms") or {}
            what = "max" if s["kind"] == "max" else f"{s['target_rps']:g}"
            validity = '<span class="ok">valid</span>' if s["valid"] else \
                "invalid: " + escape("; ".join(s["invalid_reasons"]))
            rows.append(
                f'<tr class="{"" if s["valid"] else "invalid"}"><td class=l>'
                f"{escape(m['label'])}</td><td>{what}</td><td>{_f(s['actual_qps'], 1)}</td>"
                f"<td>{s['users']}</td><td>{_f(lat['p50'], 3)}</td><td>{_f(lat['p90'], 3)}</td>"
                f"<td>{_f(lat['p99'], 3)}</td><td>{_f(lat['p99_9'], 3)}</td>"
                f"<td>{_f(lat['max'], 3)}</td><td>{s['errors']}</td>"
                f"<td>{_f(over.get('p50'), 3)}</td><td>{_f(over.get('p99'), 3)}</td>"
                f"{_component_cells(s)}<td>{_f(s['loadgen'].get('peak_process_cpu'))}</td>"
                f"<td class=l>{validity}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _summary(doc: Mapping[str, Any]) -> str:
    rows = ["<table><tr><th class=l>scenario</th><th class=l>mode</th><th>valid steps</th>"
            "<th>worst p99 overhead ms</th><th>max req/s</th><th>vs no mesh</th>"
            "<th class=l>CPU s per 1k requests</th></tr>"]
    for scenario, modes in (doc.get("summary") or {}).items():
        for mode, s in modes.items():
            cpu = ", ".join(f"{k} {v:.3f}" for k, v in sorted(s["cpu_seconds_per_1k_requests"]
                                                                .items()))
            ratio = s.get("max_throughput_ratio")
            rows.append(f"<tr><td class=l>{escape(scenario)}</td><td class=l>{escape(mode)}</td>"
                        f"<td>{s['valid_steps']}/{s['valid_steps'] + s['invalid_steps']}</td>"
                        f"<td>{_f(s['max_p99_overhead_ms'], 3)}</td>"
                        f"<td>{_f(s['max_throughput_rps'], 0)}</td>"
                        f"<td>{'&ndash;' if ratio is None else f'{ratio:.0%}'}</td>"
                        f"<td class=l>{escape(cpu)}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _environment(doc: Mapping[str, Any]) -> str:
    env, mesh = doc.get("env") or {}, doc.get("mesh_config") or {}
    host = env.get("host") or {}
    sampler = doc.get("resource_sampler") or {}
    items = [
        ("implementation", f"{mesh.get('implementation')} {mesh.get('version')}"),
        ("profile", (doc.get("labels") or {}).get("profile")),
        ("start / end", f"{doc.get('start_time')} / {doc.get('end_time')}"),
        ("wall time", f"{_f(doc.get('wall_time_s'), 1)} s"),
        ("cluster", f"{env.get('provider')} {env.get('kubernetes')}, {env.get('nodes')} nodes"),
        ("host", f"{host.get('os')} {host.get('kernel')} {host.get('machine')}, "
                 f"{host.get('cpu_count')} CPUs, Python {host.get('python')}"),
        ("load generator", f"locust {(doc.get('config') or {}).get('load_generator_version')}"),
        ("resource sampler", f"{sampler.get('name')}: "
                             f"{sampler.get('reason') or sampler.get('description')}"),
    ]
    return "<table>" + "".join(f"<tr><th class=l>{escape(k)}</th><td class=l>{escape(str(v))}"
                               "</td></tr>" for k, v in items) + "</table>"


def render(doc: Mapping[str, Any], gates: GateReport | None = None) -> str:
    """The whole report as one HTML string (no external resources)."""
    body = [f"<h1>{escape(str(doc.get('name')))}</h1>", _environment(doc)]
    if gates is not None:
        cls = "ok" if gates.passed else "fail"
        body.append(f'<h2>SLO gates: <span class="{cls}">{"PASS" if gates.passed else "FAIL"}'
                    "</span></h2><ul>" + "".join(f'<li class="fail">{escape(f)}</li>'
                                                 for f in gates.failures)
                    + "".join(f'<li class="note">{escape(n)}</li>' for n in gates.notes)
                    + "</ul>")
    body += ["<h2>Summary</h2>", _summary(doc)]
    for scenario in doc.get("scenarios") or ():
        body.append(f"<h2>Scenario {escape(scenario['name'])} "
                    f"<span class=note>{escape(scenario.get('endpoint_url') or '')}</span></h2>")
        if scenario.get("status") == "failed":
            body.append(f'<p class="fail">not measured: {escape(str(scenario.get("reason")))}'
                        "</p>")
            continue
        for m in scenario.get("modes") or ():
            for w in m.get("warnings") or ():
                body.append(f'<p class="note">{escape(m["label"])}: warning: {escape(w)}</p>')
            if m.get("fault"):
                body.append(f'<p class="fail">{escape(m["label"])}: fault injected: '
                            f"{escape(str(m['fault']))}</p>")
        body.append(_charts(scenario))
        body.append(_steps_table(scenario))
    body.append('<p class="note">Latency: Locust request event, float ms, successful requests, '
                "kept in an HDR-style histogram (1 µs buckets below 1.024 ms). Invalid steps "
                "(load generator saturated or behind its target rate) are listed, never "
                "plotted.</p>")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>"
            f"{escape(str(doc.get('name')))}</title><style>{CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
