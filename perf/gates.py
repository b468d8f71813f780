"""SLO gates: does a result document meet the limits a CI run asks for?

A pure function over the document, so the gate that fails a build is exactly the
gate the unit tests exercise, whether the document came from a live run, a file,
or a test.  Only valid measurements are judged for latency and throughput: an
invalid step never passes or fails a latency gate, but a mode left with no valid
step fails, since "we could not measure it" must not read as "it was fast".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perf.plan import BASELINE_MODE
from perf.results import iter_modes


@dataclass(frozen=True)
class Gates:
    max_p99_overhead_ms: float | None = None
    """p99 of a mesh mode minus p99 without the mesh, at the same target rate."""
    max_error_rate: float | None = 0.01
    min_throughput_ratio: float | None = None
    """Maximum throughput of a mesh mode as a fraction of the no-mesh maximum."""
    require_valid_steps: bool = True


@dataclass
class GateReport:
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    def text(self) -> str:
        head = f"SLO gates: {'PASS' if self.passed else 'FAIL'} ({self.checks} checks)"
        lines = [head, *(f"  FAIL {f}" for f in self.failures), *(f"  note {n}" for n in
                                                                    self.notes)]
        return "\n".join(lines)


def _label(scenario: str, mode: str, step: Mapping[str, Any]) -> str:
    if step.get("kind") == "max":
        return f"{scenario}/{mode} max-throughput probe"
    return f"{scenario}/{mode} at {step.get('target_rps'):g} req/s"


def evaluate(doc: Mapping[str, Any], gates: Gates) -> GateReport:
    """Every gate over every mode and step of ``doc``; the report says what failed and why."""
    report = GateReport()
    for scenario in doc.get("scenarios") or ():
        if scenario.get("status") == "failed":
            report.failures.append(f"{scenario['name']} not measured: {scenario.get('reason')}")
    for scenario, mode in iter_modes(doc):
        name, mode_name = scenario["name"], mode["mode"]
        status = mode.get("status", "ran")
        if status == "failed":
            report.failures.append(f"{name}/{mode_name} failed: {mode.get('reason')}")
            continue
        if status == "skipped":
            report.notes.append(f"{name}/{mode_name} skipped: {mode.get('reason')}")
            continue
        steps = list(mode.get("steps") or ())
        valid = [s for s in steps if s.get("valid")]
        if gates.require_valid_steps:
            report.checks += 1
            if steps and not valid:
                reasons = "; ".join(sorted({r for s in steps for r in s["invalid_reasons"]}))
                report.failures.append(f"{name}/{mode_name}: no valid step ({reasons})")
        for step in [*steps, *([mode["max_throughput"]] if mode.get("max_throughput") else [])]:
            if gates.max_error_rate is not None and step.get("requests"):
                report.checks += 1
                rate = float(step.get("error_rate") or 0.0)
                if rate > gates.max_error_rate:
                    kinds = ", ".join(f"{k} x{n}" for k, n in step.get("error_kinds", {}).items())
                    report.failures.append(
                        f"{_label(name, mode_name, step)}: error rate {rate:.2%} > "
                        f"{gates.max_error_rate:.2%} ({kinds})")
        if mode_name == BASELINE_MODE:
            continue
        if gates.max_p99_overhead_ms is not None:
            for step in valid:
                overhead = (step.get("overhead_ms") or {}).get("p99")
                if overhead is None:
                    report.notes.append(f"{_label(name, mode_name, step)}: no valid baseline "
                                        "step at this rate, p99 overhead not judged")
                    continue
                report.checks += 1
                if overhead > gates.max_p99_overhead_ms:
                    report.failures.append(
                        f"{_label(name, mode_name, step)}: p99 overhead {overhead:.2f} ms > "
                        f"{gates.max_p99_overhead_ms:g} ms (p99 "
                        f"{step['latencies_ms']['p99']:.2f} ms)")
        peak = mode.get("max_throughput")
        if gates.min_throughput_ratio is not None and peak:
            ratio = peak.get("ratio_to_baseline")
            if ratio is None:
                report.notes.append(f"{name}/{mode_name}: throughput ratio not judged (a "
                                    "max-throughput probe was invalid)")
            else:
                report.checks += 1
                if ratio < gates.min_throughput_ratio:
                    report.failures.append(
                        f"{name}/{mode_name}: max throughput {ratio:.0%} of no-mesh < "
                        f"{gates.min_throughput_ratio:.0%}")
    return report
