"""One coroutine that an object runs in the background between ``start`` and ``stop``.

Informers, controllers, the cluster DNS, the service proxy and the perf sampler all
run a loop beside the rest of their process.  Stopping one means cancelling its task
*and waiting for it*, so that its ``finally`` blocks have run before the caller goes
on; that sequence is easy to get subtly wrong, so it lives here once.  (The reference
implementation, a separate distribution, keeps its own copy in
``ambient_ref/background.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundTask:
    """``run`` made into a task by ``start`` (once while it runs) and ended by ``stop``."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._run = run
        self.name = name
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Start the task unless it is already running; returns it."""
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        return self.task

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended; a no-op when not started.

        An exception the task ended with (other than its cancellation) is raised here,
        so a loop that died is not mistaken for one that was stopped.
        """
        task, self.task = self.task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
