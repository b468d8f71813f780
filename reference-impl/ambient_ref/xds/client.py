"""The ztunnel's end of the configuration protocol: stay connected, stay current.

``XdsClient`` keeps a WebSocket to the control plane open, applies what arrives to its
``ClientState`` (see ``protocol.py``), acknowledges, and tells its user what changed.  The
control plane going away is an ordinary event: the proxy keeps forwarding with the last
configuration it had (as ztunnel does when istiod restarts), the client retries with
bounded, jittered exponential backoff forever, and on reconnect it says which version it
holds, so it gets either the changes since or a fresh snapshot, and its user hears only the
differences.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from ..background import BackgroundTask
from .protocol import Change, ClientState, Nack, ProtocolError, encode

log = logging.getLogger(__name__)

#: ``on_change(type, upserts {key: resource}, removals [key])``; may be async.
ChangeCallback = Callable[[str, dict[str, Any], list[str]], Awaitable[None] | None]
#: Returns the bearer token for the next connection (re-read each time: tokens rotate).
TokenSource = Callable[[], str | Awaitable[str]]


class XdsClient:
    """A configuration subscription that survives the control plane (see module doc).

    ``state`` holds the current configuration (``state.workloads``, ``state.services``,
    ``state.authorizations``); ``synced`` is set once the first snapshot was applied and stays
    set; ``connected`` / ``disconnected`` follow the connection.
    """

    def __init__(
        self,
        url: str,
        token_source: TokenSource,
        ssl_context: ssl.SSLContext | None,
        node: str,
        *,
        namespace: str | None = None,
        on_change: ChangeCallback | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        heartbeat: float | None = 20.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.token_source = token_source
        self.ssl_context = ssl_context
        self.node = node
        self.on_change = on_change
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.state = ClientState(node, namespace)
        self.synced = asyncio.Event()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.connections = 0  # successful connections so far, for operators and tests
        self.applied = 0  # server messages applied so far
        self._background = BackgroundTask(self.run, f"xds-client-{self.node}")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run in the background; returns the task (``stop`` ends it)."""
        return self._background.start()

    async def stop(self) -> None:
        """Disconnect and stop retrying; the last configuration stays in ``state``."""
        await self._background.stop()

    async def __aenter__(self) -> XdsClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Connect and serve forever, reconnecting with backoff whenever the stream ends."""
        backoff = self.backoff_initial
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                applied = self.applied
                try:
                    await self._connection(http)
                    log.warning("xds: %s closed the stream", self.url)
                except asyncio.CancelledError:
                    raise
                except aiohttp.WSServerHandshakeError as exc:
                    log.warning("xds: %s refused the stream: %s %s", self.url, exc.status, exc)
                except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                    log.warning("xds: %s: %s", self.url, exc or type(exc).__name__)
                except Exception:
                    # Whatever it was (a token source failing, say), giving up would leave
                    # the proxy on a configuration that never updates again: retry.
                    log.exception("xds: %s: unexpected error", self.url)
                finally:
                    self.connected.clear()
                    self.disconnected.set()
                if self.applied > applied:  # a healthy stream: the next failure is news
                    backoff = self.backoff_initial
                # Jitter, so ztunnels of every node do not return to a restarted control
                # plane in the same instant.
                delay = backoff * random.uniform(0.5, 1.0)
                log.info("xds: reconnecting in %.2fs (serving version %s)", delay, self.version)
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.backoff_max)

    @property
    def version(self) -> str | None:
        """The version of the configuration held (None before the first snapshot)."""
        return self.state.version

    # -- one connection ----------------------------------------------------------------------

    async def _connection(self, http: aiohttp.ClientSession) -> None:
        """Serve one connection until it ends."""
        token = self.token_source()
        if inspect.isawaitable(token):
            token = await token
        async with http.ws_connect(
            self.url,
            headers={"Authorization": f"Bearer {token}"},
            ssl=self.ssl_context if self.ssl_context is not None else True,
            heartbeat=self.heartbeat,
            max_msg_size=0,  # a snapshot of a large cluster is large; the server is trusted
        ) as ws:
            self.connections += 1
            self.disconnected.clear()
            self.connected.set()
            log.info("xds: connected to %s, holding version %s", self.url, self.version)
            await ws.send_str(encode(self.state.hello()))
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.ERROR:
                    raise ws.exception() or aiohttp.ClientError("WebSocket error")
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ProtocolError(f"unexpected {msg.type.name} frame")
                reception = self.state.receive(msg.data)
                if reception.applied:
                    self.applied += 1
                    self.synced.set()
                    await self._notify(reception.changes)
                for reply in reception.replies:
                    if isinstance(reply, Nack):
                        log.warning("xds: rejected version %r: %s", reply.version, reply.error)
                    await ws.send_str(encode(reply))

    async def _notify(self, changes: dict[str, Change]) -> None:
        if self.on_change is None:
            return
        for rtype, change in changes.items():
            try:
                result = self.on_change(rtype, change.upserts, change.removals)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The configuration is applied whatever its user makes of it; one bad
                # callback must not cost the stream.
                log.exception("xds: change callback failed for %s", rtype)
