"""A fortio-style test server: fixed-size responses, with ``?delay_ms=N`` to slow one down.

The delay is how the harness injects a *real* slowdown (the response leaves the
server later, on the wire, through whatever mesh is in the path) without a
control channel: the load generator asks for it per request, so a fault applies
to exactly the mode the runner chose.  ``asyncio.sleep`` keeps a delayed request
from holding up the others.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from .serving import serve_until_signalled

MAX_DELAY_MS = 10_000.0


def parse_delay(raw: str | None) -> float:
    """``delay_ms`` as seconds; a bad value is the client's error, so it raises ValueError."""
    if raw is None or raw == "":
        return 0.0
    value = float(raw)
    if not 0 <= value <= MAX_DELAY_MS:
        raise ValueError(f"delay_ms must be within 0..{MAX_DELAY_MS:g}, not {raw}")
    return value / 1000


def make_app(size: int) -> web.Application:
    body = b"x" * size

    async def handle(request: web.Request) -> web.Response:
        try:
            delay = parse_delay(request.query.get("delay_ms"))
        except ValueError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


async def serve(port: int, size: int, host: str = "0.0.0.0") -> None:
    await serve_until_signalled(make_app(size), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m perf.loadgen echo")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--size", type=int, default=1024, help="response body bytes")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.size, args.host))
