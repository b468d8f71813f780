"""Splicing a tunnel to a TCP connection, preserving FIN and RST in both directions.

A proxy is only transparent if the application sees what the far side did: a
half-close (FIN / END_STREAM) is passed on as a half-close, and a failure on either
side (RST / RST_STREAM) becomes a reset on the other.  The HBONE server uses this
between a CONNECT stream and its upstream; ztunnel's outbound path uses it between the
application's socket and its tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from h2.errors import ErrorCodes

from .connection import reset_transport
from .session import READ_SIZE, Tunnel

log = logging.getLogger("ambient_ref.hbone")


@dataclass
class RelayResult:
    """What crossed the relay, for metrics (``istio_tcp_*_bytes_total``) and logs."""

    bytes_to_tunnel: int = 0
    bytes_from_tunnel: int = 0
    # The failure that ended the relay abortively, or None if both sides finished.
    error: BaseException | None = None


async def relay(
    tunnel: Tunnel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> RelayResult:
    """Copy bytes both ways until both sides have ended; returns the byte counts.

    A failure on the TCP side resets the stream with CONNECT_ERROR (RFC 9113 section
    8.5); a failure of the tunnel resets the TCP connection.  Either way both sides are
    torn down, since neither direction means anything once the other is broken.
    Cancellation tears down both as well.
    """
    result = RelayResult()

    async def tcp_to_tunnel() -> None:
        while True:
            try:
                data = await reader.read(READ_SIZE)
            except OSError as exc:
                raise _TcpFailure(exc) from exc
            if not data:
                tunnel.write_eof()
                return
            tunnel.write(data)
            result.bytes_to_tunnel += len(data)
            await tunnel.drain()

    async def tunnel_to_tcp() -> None:
        while True:
            data = await tunnel.read(READ_SIZE)
            try:
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                result.bytes_from_tunnel += len(data)
                await writer.drain()
            except OSError as exc:
                raise _TcpFailure(exc) from exc

    tasks = [asyncio.create_task(tcp_to_tunnel()), asyncio.create_task(tunnel_to_tcp())]
    error: BaseException | None = None
    try:
        # Returns when both finished, or as soon as one failed.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        error = next((t.exception() for t in done if t.exception() is not None), None)
    except asyncio.CancelledError as exc:
        error = exc
        raise
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tcp_side = isinstance(error, _TcpFailure)
        result.error = error.__cause__ if tcp_side and error is not None else error
        _finish(tunnel, writer, result.error, tcp_side=tcp_side)
    return result


def _finish(
    tunnel: Tunnel, writer: asyncio.StreamWriter, error: BaseException | None, *, tcp_side: bool
) -> None:
    if error is None:
        tunnel.close()
        writer.close()
        return
    if tcp_side:
        log.debug("relay: TCP side failed (%s); resetting the stream", error)
        tunnel.reset(ErrorCodes.CONNECT_ERROR)
    else:
        log.debug("relay: tunnel failed (%r); resetting the TCP connection", error)
        tunnel.reset(ErrorCodes.CANCEL)
    with contextlib.suppress(Exception):
        reset_transport(writer)


class _TcpFailure(Exception):
    """Marks an error as coming from the TCP side, so the right side gets the blame."""
