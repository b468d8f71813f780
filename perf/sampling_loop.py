"""The sampling loop: each component's usage at a steady pace while a scenario runs.

A :class:`SamplingLoop` asks a :class:`~perf.component_samplers.ComponentSampler`
for every component's usage each ``interval_s`` and keeps the answers as a series
per component, for the whole scenario; :mod:`perf.step_usage` cuts the series into
step windows afterwards.  It runs as an asyncio task beside the load-generator
follower (started and stopped by :class:`clusters.background.BackgroundTask`, the
harness's one copy of that chore); each sample reads ``/proc`` (or the metrics API)
in a worker thread, so a slow read delays the next sample, never the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence

from clusters.background import BackgroundTask
from perf.component_samplers import ComponentSampler
from perf.components import PodRef
from perf.step_usage import Sample


class SamplingLoop:
    """Samples of each target component, taken in the background between start and stop."""

    def __init__(self, sampler: ComponentSampler, interval_s: float) -> None:
        self.sampler = sampler
        self.interval_s = interval_s
        self.series: dict[str, list[Sample]] = {}
        self.targets: dict[str, list[PodRef]] = {}
        self.errors: list[str] = []
        self._task = BackgroundTask(self._run, "perf-sampling-loop")
        self._sampled = asyncio.Event()

    def set_targets(self, targets: Mapping[str, Sequence[PodRef]]) -> None:
        self.targets = {c: list(p) for c, p in targets.items()}

    async def sample_once(self) -> None:
        targets = dict(self.targets)
        if not targets:
            return
        now = time.time()
        try:
            usage = await asyncio.to_thread(self.sampler.sample, targets, now)
        except Exception as exc:  # one bad sample must not end the run; it is reported
            if len(self.errors) < 20:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        t = (now + time.time()) / 2  # the read took a moment; stamp its middle
        for component, u in usage.items():
            self.series.setdefault(component, []).append(
                Sample(t, u.cpu_s, u.rss_bytes, u.pods, u.processes))
        self._sampled.set()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self.sample_once()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def past(self, t: float, timeout: float = 10.0) -> None:
        """Return once every component has a sample after ``t`` (so windows ending at
        ``t`` can be interpolated), or after ``timeout``."""
        deadline = time.monotonic() + timeout
        # woken by each round of samples (``_sampled``), not by polling the series
        while not (self.targets and all(self.series.get(c) and self.series[c][-1].t > t
                                        for c in self.targets)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._sampled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sampled.wait(), remaining)
