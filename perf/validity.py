"""Which steps measured the mesh, and which only measured the load generator.

Locust is closed-loop and single-core: when it runs out of CPU, or falls behind
its target rate, the latencies it records describe the client, not the path under
test.  Such a step is *invalid*: kept in the result with its reasons, never
plotted, compared or gated as a measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ValidityRules:
    rate_tolerance: float = 0.10
    """A rate step must achieve at least (1 - tolerance) of its target."""
    loadgen_cpu_limit: float = 0.90
    """A Locust process busier than this (cores) was saturated, as Locust's own warning says."""
    min_requests: int = 1


def invalid_reasons(step: Mapping[str, Any], rules: ValidityRules) -> list[str]:
    """Why a step record is not a measurement (empty when it is one)."""
    reasons: list[str] = []
    requests = int(step.get("requests") or 0)
    seconds = float(step.get("window_s") or 0) or 1.0
    achieved = requests / seconds
    if requests < rules.min_requests:
        reasons.append("no request started in the measurement window")
    peak = step.get("loadgen_peak_process_cpu")
    if peak is not None and float(peak) >= rules.loadgen_cpu_limit:
        reasons.append(f"load generator saturated its CPU ({float(peak):.2f} cores in one "
                       f"Locust process >= {rules.loadgen_cpu_limit:.2f})")
    if step.get("loadgen_cpu_warning"):
        reasons.append("Locust raised cpu_warning (load generator above 90% CPU)")
    target = step.get("target_rps")
    if step.get("kind") == "rate" and target:
        floor = float(target) * (1 - rules.rate_tolerance)
        if achieved < floor:
            reasons.append(f"missed the target rate: {achieved:.1f} of {float(target):g} req/s "
                           f"(more than {rules.rate_tolerance:.0%} short)")
    return reasons
