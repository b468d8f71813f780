"""The result document: Service Mesh Performance (SMP) JSON, extended for ambient.

SMP's ``PerformanceTestConfig``/``PerformanceTestResult`` fields are kept under
their SMP names (``smps_version``, ``id``, ``labels``, ``start_time``,
``end_time``, ``env``, ``mesh_config``, ``clients``, ``latencies_ms{min, average,
p50, p90, p99, max}``, ``actual_qps``) so SMP tooling finds what it knows.  What
SMP lacks for ambient is added beside it: per-mode results in one run (no mesh,
L4, L4+L7) with the baseline deltas, p99.9, error counts, the full latency
histogram, validity with reasons, and per-component CPU and memory for ztunnel,
waypoint and control plane (SMP only knows sidecars).

Everything here is a pure function of records and samples, so the shape is
tested without a cluster.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from perf.histogram import LatencyHistogram
from perf.plan import BASELINE_MODE
from perf.validity import ValidityRules, invalid_reasons

SCHEMA = {
    "name": "ambient-harness/perf-result",
    "version": 1,
    "extends": "service-mesh-performance PerformanceTestConfig + PerformanceTestResult",
}
SMPS_VERSION = "unspecified"
"""SMP's protos carry a version string but define no value; we state the extension instead."""

OVERHEAD_PERCENTILES = ("p50", "p90", "p99", "p99_9")


def _num(value: float | None) -> float | None:
    """JSON has no NaN: missing figures are null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def latencies_ms(histogram: LatencyHistogram) -> dict[str, float | None]:
    s = histogram.summary()
    return {"min": _num(s["min"]), "average": _num(s["mean"]), "p50": _num(s["p50"]),
            "p90": _num(s["p90"]), "p99": _num(s["p99"]), "p99_9": _num(s["p99.9"]),
            "max": _num(s["max"])}


def step_result(record: Mapping[str, Any], components: Mapping[str, Mapping[str, Any]],
                rules: ValidityRules) -> dict[str, Any]:
    """One step of one mode, from the load generator's record and the components' usage."""
    histogram = LatencyHistogram.from_json(record["histogram"])
    seconds = float(record.get("window_s") or record["window"][1] - record["window"][0])
    requests = int(record["requests"])
    errors = int(record["errors"])
    reasons = invalid_reasons(record, rules)
    loadgen_cpu = float(record.get("loadgen_cpu_s") or 0.0)
    return {
        "kind": record["kind"],
        "target_rps": _num(record.get("target_rps")),
        "users": int(record["users"]),
        "processes": int(record.get("processes", 1)),
        "valid": not reasons,
        "invalid_reasons": reasons,
        "start_time": float(record["window"][0]),
        "end_time": float(record["window"][1]),
        "duration_s": seconds,
        "actual_qps": requests / seconds,
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "error_kinds": dict(record.get("error_kinds") or {}),
        "by_name": dict(record.get("by_name") or {}),
        "latencies_ms": latencies_ms(histogram),
        "histogram": histogram.to_json(),
        "loadgen": {
            "cpu_cores": loadgen_cpu / seconds,
            "peak_process_cpu": _num(record.get("loadgen_peak_process_cpu")),
            "cpu_warning": bool(record.get("loadgen_cpu_warning")),
        },
        "components": {name: dict(usage) for name, usage in components.items()},
        "overhead_ms": None,
    }


def iter_modes(doc: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for scenario in doc.get("scenarios") or ():
        for mode in scenario.get("modes") or ():
            yield scenario, mode


def iter_steps(doc: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(scenario, mode, step) for every rate step and max-throughput probe."""
    for scenario, mode in iter_modes(doc):
        for step in mode.get("steps") or ():
            yield scenario["name"], mode["mode"], step
        if mode.get("max_throughput"):
            yield scenario["name"], mode["mode"], mode["max_throughput"]


def step_key(step: Mapping[str, Any]) -> tuple[str, float | None]:
    return step["kind"], step.get("target_rps")


def annotate_baseline(doc: dict[str, Any]) -> dict[str, Any]:
    """Fill each mesh step's ``overhead_ms`` (vs the no-mesh step at the same target) and
    each mode's ``max_throughput.ratio_to_baseline``; only valid pairs are compared."""
    for scenario in doc.get("scenarios") or ():
        modes = {m["mode"]: m for m in scenario.get("modes") or ()}
        base = modes.get(BASELINE_MODE)
        if base is None:
            continue
        base_steps = {step_key(s): s for s in base.get("steps") or () if s.get("valid")}
        base_max = base.get("max_throughput") or {}
        for name, mode in modes.items():
            if name == BASELINE_MODE:
                continue
            for step in mode.get("steps") or ():
                ref = base_steps.get(step_key(step))
                if ref is None or not step.get("valid"):
                    step["overhead_ms"] = None
                    continue
                step["overhead_ms"] = {
                    p: (_diff(step["latencies_ms"].get(p), ref["latencies_ms"].get(p)))
                    for p in OVERHEAD_PERCENTILES
                }
            peak = mode.get("max_throughput")
            if peak:
                ok = peak.get("valid") and base_max.get("valid") and base_max.get("actual_qps")
                peak["ratio_to_baseline"] = (peak["actual_qps"] / base_max["actual_qps"]
                                             if ok else None)
    return doc


def _diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def summarize(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Per scenario and mode: the headline figures a reader looks for first."""
    out: dict[str, Any] = {}
    for scenario, mode in iter_modes(doc):
        steps = [s for s in mode.get("steps") or () if s.get("valid")]
        overheads = [s["overhead_ms"]["p99"] for s in steps
                     if s.get("overhead_ms") and s["overhead_ms"].get("p99") is not None]
        per_1k: dict[str, float] = {}
        for name in {n for s in steps for n in s.get("components") or {}}:
            values = [s["components"][name].get("cpu_seconds_per_1k_requests") for s in steps
                      if s["components"].get(name, {}).get("available")]
            values = [v for v in values if v is not None]
            if values:
                per_1k[name] = sum(values) / len(values)
        peak = mode.get("max_throughput") or {}
        out.setdefault(scenario["name"], {})[mode["mode"]] = {
            "status": mode.get("status"),
            "valid_steps": len(steps),
            "invalid_steps": len(mode.get("steps") or ()) - len(steps),
            "max_p99_overhead_ms": max(overheads) if overheads else None,
            "max_throughput_rps": peak.get("actual_qps") if peak.get("valid") else None,
            "max_throughput_ratio": peak.get("ratio_to_baseline"),
            "cpu_seconds_per_1k_requests": per_1k,
        }
    return out
