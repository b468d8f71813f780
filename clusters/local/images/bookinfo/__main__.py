"""``python -m clusters.local.images.bookinfo <service> [--version vN] [--port] [--host]``.

What a Bookinfo "container" runs in the local cluster.  Only argparse is imported before
the arguments are known, and aiohttp only once they are valid, so a pod starts quickly.
"""

from __future__ import annotations

import argparse
import os
import sys

from .core import SERVICES


def main(argv: list[str] | None = None) -> int:
    """Serve one Bookinfo service until SIGTERM/SIGINT; 0 on a clean stop, 1 if the
    service could not start (e.g. its port is taken), so the node agent restarts it."""
    parser = argparse.ArgumentParser(
        prog="python -m clusters.local.images.bookinfo",
        description="Serve one service of the Bookinfo sample application.",
    )
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument(
        "--version",
        default=None,
        help="service version (reviews: v1|v2|v3; ratings: v1|v2|v-faulty|v-delayed|"
        "v-unavailable|v-unhealthy); default $SERVICE_VERSION, else v1",
    )
    parser.add_argument("--port", type=int, default=9080, help="listen port (default 9080)")
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    args = parser.parse_args(argv)
    version = args.version or os.environ.get("SERVICE_VERSION") or "v1"

    import asyncio

    from .services import Settings, serve

    try:
        settings = Settings.from_env(args.service, version, os.environ)
    except ValueError as exc:
        print(f"bookinfo {args.service}: bad environment: {exc}", file=sys.stderr, flush=True)
        return 1
    try:
        asyncio.run(serve(settings, args.host, args.port))
    except OSError as exc:
        print(
            f"bookinfo {args.service}: cannot serve on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
