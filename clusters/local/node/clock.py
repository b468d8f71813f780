"""The node agent's clock: timestamps as the API writes them, and the waits between
retries that a pod's deletion cuts short.

Shared by the modules that retry something for a pod (its containers, its
volumes, its sandbox), so each waits the same way and reads the same times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339 in seconds, as the API writes times
# Waiting for a missing ConfigMap, Secret or service account (kubelet re-syncs a
# pod periodically and on changes): first retry after 1 s, then at most every 10 s.
RESYNC_START, RESYNC_MAX = 1.0, 10.0


def now() -> str:
    return datetime.now(UTC).strftime(TIMESTAMP)


def seconds_since(ts: str) -> float:
    """How long ago ``ts`` (a timestamp of ``now()``) was; 0 if it is not one."""
    try:
        return time.time() - datetime.strptime(ts, TIMESTAMP).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0


async def pause(until: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``until`` (the pod's deletion) is set first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(until.wait(), seconds)
