"""Istio's tcp-echo sample server (``samples/tcp-echo/src/main.go``).

Run as the image runs: ``tcp_echo PORTS PREFIX`` with ports comma-separated
(``9000,9001,9002``).  Every line a client sends comes back as ``PREFIX line``; it
prints ``listening on [::]:<port>, prefix: <prefix>`` per port, and each request and
response, as the upstream server does.
"""

from __future__ import annotations

import asyncio
import sys


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            prefix: bytes) -> None:
    try:
        while line := await reader.readline():
            if not line.endswith(b"\n"):
                break  # EOF inside a line: the upstream server drops it too
            print(f"request: {line.decode(errors='replace')}", end="", flush=True)
            answer = prefix + b" " + line
            print(f"response: {answer.decode(errors='replace')}", end="", flush=True)
            writer.write(answer)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def start(ports: list[int], prefix: str) -> list[asyncio.Server]:
    """Listening on each port (0: any free one), every address of both families, as
    Go's ``:9000`` listens (asyncio would make a ``::`` socket IPv6-only)."""
    servers = []
    for port in ports:
        server = await asyncio.start_server(
            lambda r, w: _serve_connection(r, w, prefix.encode()), host=None, port=port)
        bound = server.sockets[0].getsockname()[1]
        print(f"listening on [::]:{bound}, prefix: {prefix}", flush=True)
        servers.append(server)
    return servers


async def serve(ports: list[int], prefix: str) -> None:
    servers = await start(ports, prefix)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("you should run it like: 'main [PORTS...] prefix' , please notice PORTS are "
              "comma-delineated , like  port 1[,port 2]  ")
        return 1
    try:
        ports = [int(p) for p in argv[0].split(",")]
    except ValueError:
        print(f"failed to create listener, err: bad port list {argv[0]!r}")
        return 1
    asyncio.run(serve(ports, argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
