"""A minimal HTTP server for load tests: ``python -m clusters.local.images.benchserver``.

Answers every GET with a body of ``--size`` bytes (1 KB by default, as the Istio
benchmarks use), keep-alive, and nothing else, so a measurement sees the network
path and the mesh rather than an application.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m clusters.local.images.benchserver")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    body = b"x" * args.size

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/octet-stream")

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", args.port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
