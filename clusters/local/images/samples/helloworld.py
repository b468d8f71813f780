"""Istio's helloworld sample server (``samples/helloworld/src/app.py``): port 5000.

``GET /hello`` answers ``Hello version: <v>, instance: <hostname>`` and a newline,
``GET /health`` ``Helloworld is healthy``.  The version is the image's (``v1`` or
``v2``, its ``SERVICE_VERSION``) unless the pod's env sets ``SERVICE_VERSION``.  The
upstream server also burns CPU on every ``/hello`` (a million square roots, for
autoscaling demos); this one does not.
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web


def app(version: str, hostname: str) -> web.Application:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text=f"Hello version: {version}, instance: {hostname}\n",
                            content_type="text/html")

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="Helloworld is healthy", content_type="text/html")

    application = web.Application()
    application.router.add_get("/hello", hello)
    application.router.add_get("/health", health)
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="v1", help="the image's SERVICE_VERSION")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    version = os.environ.get("SERVICE_VERSION", args.version)
    # both families, as upstream's "[::]:5000" listens (asyncio makes "::" IPv6-only)
    web.run_app(app(version, os.environ.get("HOSTNAME", "")), host=["0.0.0.0", "::"],
                port=args.port, print=None)


if __name__ == "__main__":
    main()
