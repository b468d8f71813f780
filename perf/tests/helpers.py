"""Synthetic load-generator records and result documents for the sans-IO tests."""

from __future__ import annotations

import random
from typing import Any

from perf.histogram import LatencyHistogram
from perf.plan import MODE_LABELS
from perf.results import annotate_baseline, step_result, summarize
from perf.step_usage import Sample, window_usage
from perf.validity import ValidityRules

T0 = 1_700_000_000.0


def record(*, kind: str = "rate", target: float | None = 100.0, seconds: float = 2.0,
           latencies: list[float] | None = None, errors: int = 0, achieved: float | None = None,
           loadgen_cpu: float = 0.05, users: int = 10, start: float = T0,
           seed: int = 1) -> dict[str, Any]:
    """A step record as the load generator emits it (after the agent's merge)."""
    rng = random.Random(seed)
    n = round((achieved if achieved is not None else (target or 1000.0)) * seconds) - errors
    values = latencies if latencies is not None else [1.0 + rng.random() for _ in range(n)]
    h = LatencyHistogram().extend(values)
    return {"type": "step", "run_id": "r", "index": 0, "kind": kind, "target_rps": target,
            "users": users, "window": [start, start + seconds], "window_s": seconds,
            "requests": h.count + errors, "errors": errors,
            "error_kinds": {"HTTP 503": errors} if errors else {}, "by_name": {},
            "histogram": h.to_json(), "loadgen_cpu_s": loadgen_cpu * seconds,
            "loadgen_seconds": seconds, "loadgen_peak_process_cpu": loadgen_cpu,
            "loadgen_cpu_warning": False, "processes": 1}


def usage(start: float, seconds: float, requests: int, cores: float) -> dict[str, Any]:
    samples = [Sample(start - 1 + i * 0.25, cores * (i * 0.25), 50 * 2**20, 2, 2)
               for i in range(int((seconds + 2) / 0.25) + 1)]
    return {"ztunnel": window_usage(samples, start, start + seconds, requests)}


def mode(name: str, steps: list[dict[str, Any]], peak: dict[str, Any] | None = None,
         rules: ValidityRules | None = None, cores: float = 0.1) -> dict[str, Any]:
    rules = rules or ValidityRules()

    def build(r: dict[str, Any]) -> dict[str, Any]:
        return step_result(r, usage(r["window"][0], r["window_s"], r["requests"], cores), rules)

    return {"mode": name, "label": MODE_LABELS[name], "status": "ran", "reason": None,
            "warnings": [], "steps": [build(r) for r in steps],
            "max_throughput": build(peak) if peak else None, "fault": None}


def document(modes: list[dict[str, Any]], scenario: str = "direct") -> dict[str, Any]:
    doc = {"smps_version": "unspecified", "id": "x", "name": "test", "labels": {"profile": "t"},
           "scenarios": [{"name": scenario, "endpoint_url": "http://server/", "modes": modes}]}
    annotate_baseline(doc)
    doc["summary"] = summarize(doc)
    return doc


def three_modes(extra_ms: dict[str, float] | None = None, peaks: dict[str, float] | None = None,
                ) -> dict[str, Any]:
    """none / l4 / l7 at 50 and 100 req/s, latencies ~1-2 ms plus ``extra_ms`` per mode."""
    extra_ms = extra_ms or {}
    peaks = peaks or {"none": 5000.0, "l4": 3000.0, "l7": 1000.0}
    out = []
    for i, name in enumerate(("none", "l4", "l7")):
        add = extra_ms.get(name, 0.0)
        steps = []
        for j, rate in enumerate((50.0, 100.0)):
            rng = random.Random(j)  # the same draws in every mode: only ``add`` differs
            values = [1.0 + rng.random() + add for _ in range(round(rate * 2))]
            steps.append(record(target=rate, latencies=values))
        peak = record(kind="max", target=None, achieved=peaks[name], loadgen_cpu=0.5)
        out.append(mode(name, steps, peak, cores=0.05 * (i + 1)))
    return document(out)
