"""Serve an aiohttp app until SIGTERM/SIGINT: how the pod's programs run and stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web


async def serve_until_signalled(app: web.Application, host: str, port: int,
                                on_stop: Callable[[], Awaitable[None]] | None = None) -> None:
    """Listen on ``host:port`` until the pod is told to stop, then run ``on_stop``
    (e.g. cancel work in progress) and close the server."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        try:
            if on_stop is not None:
                await on_stop()
        finally:
            await runner.cleanup()
