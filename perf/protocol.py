"""The records the load generator writes to its log, and how the runner reads them back.

The pod's log is the channel out of the cluster because every cluster has one
(``kubectl logs``) and it survives the reader being slow or restarted.  Each record
is one line, ``MARKER`` followed by JSON, so anything else on stdout/stderr
(warnings, tracebacks) is ignored rather than breaking the parse.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

MARKER = "@@ambient-perf "

HELLO = "hello"
READY = "ready"
"""A worker has imported Locust and waits for the start time on its stdin; from the
agent, every worker is ready and the schedule starts at ``start_at``."""
READY_TIMEOUT_S = 120.0
"""How long workers may take to be ready (importing Locust on a busy machine) before
the agent gives up on the run; a reader of the records allows for it too."""
STEP = "step"
ERROR = "error"
DONE = "done"


def encode(record: dict[str, Any]) -> str:
    """One log line (without the newline)."""
    if "type" not in record:
        raise ValueError("a record needs a 'type'")
    return MARKER + json.dumps(record, separators=(",", ":"), allow_nan=False)


def decode(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records among ``lines``, in order; other lines and torn JSON are skipped."""
    out: list[dict[str, Any]] = []
    for line in lines:
        idx = line.find(MARKER)
        if idx < 0:
            continue
        try:
            record = json.loads(line[idx + len(MARKER):])
        except ValueError:
            continue  # a line cut by a log rotation or a crash mid-write
        if isinstance(record, dict) and "type" in record:
            out.append(record)
    return out


def for_run(records: Iterable[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("run_id") == run_id]


def merge_steps(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One step record from the same step of several load processes.

    Counts and histograms add up; the load generator's CPU is kept both as a total
    and as the busiest process's share, since each Locust process is one core at
    most and saturation is a per-process matter.
    """
    from perf.histogram import LatencyHistogram  # local: keep this module dependency-free

    if not records:
        raise ValueError("nothing to merge")
    first = records[0]
    histogram = LatencyHistogram()
    errors: dict[str, int] = {}
    by_name: dict[str, int] = {}
    peak = 0.0
    for r in records:
        histogram.merge(LatencyHistogram.from_json(r["histogram"]))
        for key, n in (r.get("error_kinds") or {}).items():
            errors[key] = errors.get(key, 0) + int(n)
        for key, n in (r.get("by_name") or {}).items():
            by_name[key] = by_name.get(key, 0) + int(n)
        peak = max(peak, float(r["loadgen_cpu_s"]) / float(r.get("loadgen_seconds") or 1))
    merged = {k: v for k, v in first.items() if k not in ("worker",)}
    merged.update(
        requests=sum(int(r["requests"]) for r in records),
        errors=sum(int(r["errors"]) for r in records),
        error_kinds=errors, by_name=by_name, histogram=histogram.to_json(),
        users=sum(int(r["users"]) for r in records),
        target_rps=(sum(float(r["target_rps"]) for r in records)
                    if first.get("target_rps") is not None else None),
        loadgen_cpu_s=sum(float(r["loadgen_cpu_s"]) for r in records),
        loadgen_peak_process_cpu=peak,
        loadgen_cpu_warning=any(r.get("loadgen_cpu_warning") for r in records),
        processes=len(records),
    )
    return merged
