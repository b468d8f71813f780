"""Regression check: a result document against a previous one.

Steps are matched by scenario, mode, kind and target rate; only steps valid in
both runs are compared, since an invalid step measured the load generator.  A
change counts as a regression when it is worse by more than ``threshold``
(relative) *and* by more than an absolute floor, so 0.05 ms of jitter on a 0.4 ms
p50 is not reported as a 12 % regression.

``python -m perf compare CURRENT PREVIOUS [--threshold 0.1]`` exits 1 on a regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from perf.results import iter_steps

LATENCY_METRICS = ("p50", "p99", "p99_9")


@dataclass(frozen=True)
class Change:
    where: str
    metric: str
    previous: float
    current: float

    @property
    def relative(self) -> float:
        return (self.current - self.previous) / self.previous if self.previous else float("inf")

    def text(self) -> str:
        return (f"{self.where}: {self.metric} {self.previous:.4g} -> {self.current:.4g} "
                f"({self.relative:+.1%})")


@dataclass
class Comparison:
    regressions: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)
    compared: int = 0
    unmatched: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def text(self) -> str:
        lines = [f"compared {self.compared} figures: {len(self.regressions)} regression(s), "
                 f"{len(self.improvements)} improvement(s)"]
        lines += [f"  REGRESSION {c.text()}" for c in self.regressions]
        lines += [f"  improved   {c.text()}" for c in self.improvements]
        lines += [f"  not compared: {u}" for u in self.unmatched]
        return "\n".join(lines)


def _where(scenario: str, mode: str, step: Mapping[str, Any]) -> str:
    if step["kind"] == "max":
        return f"{scenario}/{mode}/max"
    return f"{scenario}/{mode}/{step['target_rps']:g}rps"


def _index(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {_where(sc, mode, step): step for sc, mode, step in iter_steps(doc)}


def compare(current: Mapping[str, Any], previous: Mapping[str, Any], *,
            threshold: float = 0.10, min_latency_ms: float = 0.2,
            min_cpu_per_1k: float = 0.005, min_error_rate: float = 0.001) -> Comparison:
    """What got worse (and better) from ``previous`` to ``current`` beyond the thresholds."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, not {threshold}")
    out = Comparison()
    now, before = _index(current), _index(previous)
    for where in sorted(set(now) | set(before)):
        a, b = before.get(where), now.get(where)
        if a is None or b is None:
            out.unmatched.append(f"{where} (only in the {'current' if a is None else 'previous'}"
                                 " run)")
            continue
        if not (a.get("valid") and b.get("valid")):
            both = not (a.get("valid") or b.get("valid"))
            out.unmatched.append(f"{where} (invalid in {'both runs' if both else 'one run'})")
            continue
        for metric in LATENCY_METRICS:
            _judge(out, where, f"latency {metric} ms", a["latencies_ms"].get(metric),
                   b["latencies_ms"].get(metric), threshold, min_latency_ms, higher_is_worse=True)
        _judge(out, where, "error rate", a.get("error_rate") or 0.0, b.get("error_rate") or 0.0,
               threshold, min_error_rate, higher_is_worse=True)
        if b["kind"] == "max":
            _judge(out, where, "max throughput req/s", a.get("actual_qps"), b.get("actual_qps"),
                   threshold, 0.0, higher_is_worse=False)
        for name in sorted(set(a.get("components") or {}) & set(b.get("components") or {})):
            ca, cb = a["components"][name], b["components"][name]
            if ca.get("available") and cb.get("available"):
                _judge(out, where, f"{name} CPU s/1k req", ca.get("cpu_seconds_per_1k_requests"),
                       cb.get("cpu_seconds_per_1k_requests"), threshold, min_cpu_per_1k,
                       higher_is_worse=True)
    return out


def _judge(out: Comparison, where: str, metric: str, previous: float | None,
           current: float | None, threshold: float, floor: float, *,
           higher_is_worse: bool) -> None:
    if previous is None or current is None:
        return
    out.compared += 1
    change = Change(where, metric, float(previous), float(current))
    worse = (current - previous) if higher_is_worse else (previous - current)
    limit = max(abs(previous) * threshold, floor)
    if worse > limit:
        out.regressions.append(change)
    elif -worse > limit:
        out.improvements.append(change)
