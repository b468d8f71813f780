"""Load profiles: which scenarios, which load steps, how long each is measured.

``short`` is for CI and ``pytest perf/``: seconds per mode, enough to exercise
every path and catch a gross slowdown.  ``full`` is the measurement: longer
windows (istio/tools drops warm-up for the same reason: connection set-up, caches,
the first xDS pushes) and a load ladder up to 400 req/s, plus Bookinfo.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from perf.plan import MODES, PlanError, Step, users_for
from perf.validity import ValidityRules


@dataclass(frozen=True)
class ScenarioLoad:
    scenario: str
    rates: tuple[float, ...]
    max_probe: bool = True


@dataclass(frozen=True)
class Profile:
    name: str
    loads: tuple[ScenarioLoad, ...]
    step_s: float
    warmup_s: float
    max_probe_s: float
    cooldown_s: float = 0.3
    per_user_rps: float = 10.0
    """Each Locust user paces at most this many req/s (a 100 ms budget per request)."""
    max_users: int = 64
    max_probe_users: int = 16
    loadgen_processes: int = 2
    """Locust processes sharing every step: one is at most one core, which a no-mesh
    path outruns in the throughput probe, so the probe would measure Locust."""
    modes: tuple[str, ...] = MODES
    rules: ValidityRules = field(default_factory=ValidityRules)
    sample_interval_s: float = 0.25

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise PlanError(f"unknown modes {unknown}; known: {list(MODES)}")
        if not self.loads:
            raise PlanError("a profile needs at least one scenario")

    def rate_steps(self, load: ScenarioLoad) -> tuple[Step, ...]:
        return tuple(Step("rate", users_for(r, self.per_user_rps, self.max_users), self.warmup_s,
                          self.step_s, float(r)) for r in load.rates)

    def max_step(self) -> Step:
        return Step("max", self.max_probe_users, self.warmup_s, self.max_probe_s)

    def replace(self, **changes: object) -> Profile:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def estimated_seconds(self) -> float:
        """Load time only (no cluster bring-up or mesh changes): for the progress header."""
        per_mode = 0.0
        for load in self.loads:
            per_mode += len(load.rates) * (self.warmup_s + self.step_s + self.cooldown_s) + 1
            if load.max_probe:
                per_mode += self.warmup_s + self.max_probe_s + self.cooldown_s
        return per_mode * len(self.modes)


SHORT = Profile(
    name="short",
    loads=(ScenarioLoad("direct", (50.0, 100.0)),),
    step_s=2.0, warmup_s=1.0, max_probe_s=1.0, cooldown_s=0.3,
)

FULL = Profile(
    name="full",
    # 1,000 req/s is the rate of Istio's published ztunnel overhead (Istio 1.22
    # performance docs: +0.17 ms p90, +0.20 ms p99), so the figures can stand beside it.
    loads=(ScenarioLoad("direct", (50.0, 100.0, 200.0, 400.0, 1000.0)),
           ScenarioLoad("bookinfo", (10.0, 25.0, 50.0))),
    step_s=10.0, warmup_s=3.0, max_probe_s=10.0, cooldown_s=0.5, max_users=128,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (SHORT, FULL)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise PlanError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
