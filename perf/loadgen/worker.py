"""One Locust process: run a plan's steps on schedule and report each step.

Locust is used as a library with a fresh ``Environment`` per step, so no listener,
user or statistic leaks from one step to the next, and listeners go on that
environment's own ``events`` (never the module-global ``locust.events``, where they
would pile up).  Every latency comes from the ``request`` event as Locust's float
milliseconds into a fine histogram; Locust's rounded percentiles are never used.

Imported only by ``python -m perf.loadgen worker``, which imports Locust first:
importing it monkey-patches the process with gevent, which must happen before
anything imports ``ssl``.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import Counter
from typing import Any

import gevent
from locust import constant, constant_throughput
from locust.env import Environment

from perf import protocol
from perf.histogram import LatencyHistogram
from perf.loadgen.scenarios import USERS
from perf.plan import LoadPlan, Step, StepSchedule, schedule

SPAWN_RATE = 100.0
"""Users started per second: Locust warns above 100; warm-up covers the ramp."""


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sleep_until(t: float) -> None:
    gevent.sleep(max(0.0, t - time.time()))


def _error_kind(exception: BaseException) -> str:
    text = str(exception)
    # FastHttpUser reports HTTP errors as "<status> ..." inside a generic exception.
    head = text.split(" ", 1)[0]
    if head.isdigit():
        return f"HTTP {head}"
    return type(exception).__name__


def user_class(plan: LoadPlan, step: Step) -> type:
    """The scenario's user, paced for this step (``max`` steps do not wait at all)."""
    base = USERS[plan.scenario]
    wait = constant(0) if step.kind == "max" else constant_throughput(step.per_user_rps or 1)
    return type(f"{base.__name__}Step", (base,), {
        "abstract": False, "host": plan.host, "path": plan.path, "wait_time": wait,
        "network_timeout": plan.request_timeout_s,
        "connection_timeout": plan.request_timeout_s,
    })


def run_step(plan: LoadPlan, index: int, step: Step, when: StepSchedule) -> dict[str, Any]:
    """Run one step and return its record: only requests *started* in the window count."""
    env = Environment(user_classes=[user_class(plan, step)], host=plan.host)
    histogram = LatencyHistogram()
    errors: Counter[str] = Counter()
    by_name: Counter[str] = Counter()
    cpu_warnings: list[float] = []

    def on_request(request_type: str, name: str, response_time: float, response_length: int,
                   exception: BaseException | None = None, start_time: float | None = None,
                   **_: Any) -> None:
        started = start_time if start_time is not None else time.time() - response_time / 1000
        if not when.window_start <= started < when.window_end:
            return
        by_name[name] += 1
        if exception is not None:
            errors[_error_kind(exception)] += 1
        else:
            histogram.record(response_time)

    env.events.request.add_listener(on_request)
    env.events.cpu_warning.add_listener(
        lambda environment=None, cpu_usage=0.0, **_: cpu_warnings.append(float(cpu_usage)))
    runner = env.create_local_runner()
    _sleep_until(when.begin)
    runner.start(step.users, spawn_rate=SPAWN_RATE)
    _sleep_until(when.window_start)
    cpu0, t0 = _cpu_seconds(), time.time()
    _sleep_until(when.window_end)
    cpu1, t1 = _cpu_seconds(), time.time()
    _sleep_until(when.stop)  # let requests started in the window finish
    runner.quit()
    seconds = when.window_end - when.window_start
    return {
        "type": protocol.STEP, "run_id": plan.run_id, "index": index, "kind": step.kind,
        "target_rps": step.target_rps, "users": step.users,
        "window": [when.window_start, when.window_end],
        "requests": histogram.count + sum(errors.values()),
        "errors": sum(errors.values()), "error_kinds": dict(errors),
        "by_name": dict(by_name),
        "histogram": histogram.to_json(),
        "loadgen_cpu_s": cpu1 - cpu0, "loadgen_seconds": max(t1 - t0, 1e-9),
        "loadgen_cpu_warning": bool(cpu_warnings or runner.cpu_warning_emitted),
        "window_s": seconds,
    }


def ready_then_start_at(plan: LoadPlan, out: Any = sys.stdout, source: Any = sys.stdin,
                        ) -> float:
    """Say this process is ready (Locust imported, gevent patched) and wait for the
    start time on ``source``: the agent sets the schedule once every worker is ready,
    so a slow start on a busy machine never eats into a step's window."""
    print(protocol.encode({"type": protocol.READY, "run_id": plan.run_id}), file=out,
          flush=True)
    line = source.readline()
    try:
        return float(line)
    except ValueError:
        raise SystemExit(f"expected a start time (epoch seconds) on stdin, got {line!r}") \
            from None


def run(plan: LoadPlan, start_at: float, out: Any = sys.stdout) -> None:
    """Every step of ``plan`` in order, one record per line on ``out``."""
    for index, (step, when) in enumerate(zip(plan.steps, schedule(plan, start_at), strict=True)):
        record = run_step(plan, index, step, when)
        print(protocol.encode(record), file=out, flush=True)
