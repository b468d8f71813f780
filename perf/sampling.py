"""The sampling loop: component usage at a steady pace while load runs.

It runs as an asyncio task beside the load-generator follower; each sample reads
``/proc`` (or the metrics API) in a worker thread, so a slow read delays the next
sample, never the event loop.  Series are kept per component for the whole
scenario and cut into step windows afterwards (:mod:`perf.usage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence

from perf.resources import PodRef, ResourceSampler
from perf.usage import Sample


class SamplingLoop:
    def __init__(self, sampler: ResourceSampler, interval_s: float) -> None:
        self.sampler = sampler
        self.interval_s = interval_s
        self.series: dict[str, list[Sample]] = {}
        self.targets: dict[str, list[PodRef]] = {}
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None
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
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def past(self, t: float, timeout: float = 10.0) -> None:
        """Return once every component has a sample after ``t`` (so windows ending at
        ``t`` can be interpolated), or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.targets and all(self.series.get(c) and self.series[c][-1].t > t
                                    for c in self.targets):
                return
            await asyncio.sleep(self.interval_s / 2)
