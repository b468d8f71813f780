"""What the load generator is asked to do for one mode: steps, pacing and schedule.

The plan crosses a process (and pod) boundary as JSON, so it is plain data with
strict parsing: a malformed plan is rejected with the field named, before any
load is sent.  Steps run on an absolute wall-clock schedule so that several load
processes measure exactly the same windows and the runner can line resource
samples up with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StepKind = Literal["rate", "max"]

MODES: tuple[str, ...] = ("none", "l4", "l7")
MODE_LABELS: Mapping[str, str] = {
    "none": "no mesh",
    "l4": "L4 (ztunnel)",
    "l7": "L4+L7 (waypoint)",
}
BASELINE_MODE = "none"


class PlanError(ValueError):
    """A plan (or profile) is malformed; the message names the field."""


@dataclass(frozen=True)
class Step:
    """One load level: a target rate (``rate``) or as fast as ``users`` go (``max``)."""

    kind: StepKind
    users: int
    warmup_s: float
    duration_s: float
    target_rps: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("rate", "max"):
            raise PlanError(f"step kind must be 'rate' or 'max', not {self.kind!r}")
        if self.kind == "rate" and not (self.target_rps and self.target_rps > 0):
            raise PlanError(f"a rate step needs target_rps > 0, not {self.target_rps!r}")
        if self.users < 1:
            raise PlanError(f"a step needs at least one user, not {self.users}")
        if self.warmup_s < 0 or self.duration_s <= 0:
            raise PlanError(f"warmup_s must be >= 0 and duration_s > 0 "
                            f"(got {self.warmup_s}, {self.duration_s})")

    @property
    def per_user_rps(self) -> float | None:
        """The ``constant_throughput`` of each user: the target split evenly."""
        return self.target_rps / self.users if self.target_rps else None


@dataclass(frozen=True)
class LoadPlan:
    """Everything one load-generator run needs; ``run_id`` tags every record it emits."""

    run_id: str
    scenario: str
    host: str
    steps: tuple[Step, ...]
    path: str = "/"
    processes: int = 1
    request_timeout_s: float = 5.0
    cooldown_s: float = 0.3
    start_delay_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.run_id or not self.scenario:
            raise PlanError("a plan needs a run_id and a scenario")
        if not self.host.startswith(("http://", "https://")):
            raise PlanError(f"host must be an http(s) URL, not {self.host!r}")
        if not self.path.startswith("/"):
            raise PlanError(f"path must start with '/', not {self.path!r}")
        if not self.steps:
            raise PlanError("a plan needs at least one step")
        if not 1 <= self.processes <= 16:
            raise PlanError(f"processes must be 1..16, not {self.processes}")
        if self.request_timeout_s <= 0 or self.cooldown_s < 0 or self.start_delay_s < 0:
            raise PlanError("request_timeout_s must be > 0; cooldown_s, start_delay_s >= 0")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [asdict(s) for s in self.steps]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoadPlan:
        if not isinstance(data, Mapping):
            raise PlanError(f"a plan is a JSON object, not {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise PlanError(f"unknown plan fields: {', '.join(sorted(unknown))}")
        try:
            steps = tuple(Step(**s) for s in data.get("steps") or ())
            return cls(**{**data, "steps": steps})
        except TypeError as exc:
            raise PlanError(f"malformed plan: {exc}") from None

    def step_span_s(self, step: Step) -> float:
        return step.warmup_s + step.duration_s + self.cooldown_s

    def expected_seconds(self) -> float:
        """How long the run takes once started: what the runner waits for, plus a margin."""
        return self.start_delay_s + sum(self.step_span_s(s) for s in self.steps)


@dataclass(frozen=True)
class StepSchedule:
    """Absolute epoch times: users start at ``begin``; only ``window`` is measured."""

    begin: float
    window_start: float
    window_end: float
    stop: float


def schedule(plan: LoadPlan, start_at: float) -> list[StepSchedule]:
    """The wall-clock schedule of every step, starting at ``start_at`` (epoch seconds)."""
    out: list[StepSchedule] = []
    t = start_at
    for step in plan.steps:
        w0 = t + step.warmup_s
        w1 = w0 + step.duration_s
        out.append(StepSchedule(t, w0, w1, w1 + plan.cooldown_s))
        t = w1 + plan.cooldown_s
    return out


def users_for(rate: float, per_user_rps: float, max_users: int) -> int:
    """Users needed so each paces at most ``per_user_rps``: Locust is closed-loop, so a
    user whose request takes longer than 1/its rate falls behind; more users, more
    slack before the target is missed."""
    if rate <= 0 or per_user_rps <= 0:
        raise PlanError(f"rate and per-user rate must be > 0 (got {rate}, {per_user_rps})")
    return max(1, min(max_users, math.ceil(rate / per_user_rps)))


@dataclass(frozen=True)
class Fault:
    """A deliberate slowdown for one mode: the target server waits ``delay_ms`` per request.

    Used to prove the SLO gates catch a slower mesh: the delay is real (on the wire,
    inside the server), applied through the request, so it needs no control channel.
    """

    delay_ms: float = 0.0


@dataclass(frozen=True)
class Faults:
    by_mode: Mapping[str, Fault] = field(default_factory=dict)

    def path_for(self, mode: str, path: str) -> str:
        fault = self.by_mode.get(mode)
        if not fault or fault.delay_ms <= 0:
            return path
        sep = "&" if "?" in path else "?"
        return f"{path}{sep}delay_ms={fault.delay_ms:g}"


def split_plan(plan: LoadPlan) -> list[LoadPlan]:
    """One plan per load process: users and the target rate shared out evenly.

    A process whose share of a step would be zero users still gets one (so no process
    idles through a step while others measure it); the rate is then shared by users
    actually started, so the processes' targets always add up to the step's.
    """
    n = plan.processes
    shares: list[list[Step]] = [[] for _ in range(n)]
    for step in plan.steps:
        users = [max(1, step.users // n + (1 if i < step.users % n else 0)) for i in range(n)]
        for i in range(n):
            rate = step.target_rps * users[i] / sum(users) if step.target_rps else None
            shares[i].append(Step(step.kind, users[i], step.warmup_s, step.duration_s, rate))
    return [LoadPlan(**{**plan.__dict__, "steps": tuple(steps), "processes": 1})
            for steps in shares]
