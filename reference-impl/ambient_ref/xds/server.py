"""The control plane's end of the configuration protocol: one WebSocket session per ztunnel.

``xds_handler(store, authenticate)`` gives an aiohttp handler for ``GET /v1/xds`` (see
``protocol.py`` for the protocol).  Each session has its own queue and writer task, fed
synchronously by the ``ResourceStore`` as it changes: a ztunnel that reads slowly delays
only itself, and when its queue grows past ``queue_limit`` the queued deltas are replaced by
one snapshot, so its memory stays bounded and it still converges.

Register ``endpoint.shutdown`` in ``app.on_shutdown`` (``install`` does): aiohttp waits for
open handlers when it stops, and a configuration stream never ends by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .protocol import (
    XDS_PATH,
    Ack,
    Delta,
    Hello,
    Nack,
    ProtocolError,
    ResourceStore,
    ServerMessage,
    Snapshot,
    decode_client,
    encode,
)

log = logging.getLogger(__name__)

#: ``authenticate(bearer token)`` -> who the caller is (any truthy value, kept in the
#: session), or a falsy value to refuse with 401.  Raising means "cannot tell now": 503.
Authenticator = Callable[[str], Awaitable[Any]]

_ids = itertools.count(1)


@dataclass
class Session:
    """One connected client, as operators and tests see it."""

    id: int
    peer: str
    principal: Any
    node: str = ""
    namespace: str | None = None
    connected_at: float = field(default_factory=time.time)
    sent_version: str | None = None
    acked_version: str | None = None
    nack: tuple[str, str] | None = None  # (version, error) of the last rejection
    snapshots_sent: int = 0
    deltas_sent: int = 0
    coalesced: int = 0  # how often its queue was replaced by a snapshot
    _queue: deque[ServerMessage] = field(default_factory=deque, repr=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class XdsEndpoint:
    """The aiohttp handler serving the configuration stream; ``sessions`` are the live ones."""

    def __init__(
        self,
        store: ResourceStore,
        authenticate: Authenticator,
        *,
        queue_limit: int = 16,
        hello_timeout: float = 10.0,
        heartbeat: float | None = 20.0,
    ) -> None:
        self.store = store
        self.authenticate = authenticate
        self.queue_limit = max(queue_limit, 1)
        self.hello_timeout = hello_timeout
        self.heartbeat = heartbeat
        self.sessions: dict[int, Session] = {}
        self._sockets: dict[int, web.WebSocketResponse] = {}
        # Set (and replaced) whenever a session connects, acks, nacks or leaves.
        self._activity = asyncio.Event()

    async def wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds, re-checked on each session event.

        For callers that must know ztunnels applied a version (readiness, tests).  Raises
        ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._activity.wait()

    def _notify(self) -> None:
        activity, self._activity = self._activity, asyncio.Event()
        activity.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler: authenticate, upgrade, then serve the session until it ends."""
        principal = await self._authenticate(request)
        ws = web.WebSocketResponse(heartbeat=self.heartbeat)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="expected a WebSocket upgrade\n")
        await ws.prepare(request)
        session = Session(id=next(_ids), peer=request.remote or "", principal=principal)
        self.sessions[session.id] = session
        self._sockets[session.id] = ws
        unsubscribe: Callable[[], None] | None = None
        writer: asyncio.Task[None] | None = None
        try:
            hello = await self._hello(ws)
            if hello is None:
                return ws
            session.node, session.namespace = hello.node, hello.namespace
            log.info("xds: %s (%s) connected from %s", hello.node, principal, session.peer)
            self._notify()
            # No await between the first message and subscribing: the session sees every
            # change exactly once, either in the first message or as a delta after it.
            self._restart(session, hello)
            unsubscribe = self.store.subscribe(lambda delta: self._push(session, delta))
            writer = asyncio.create_task(self._write(session, ws), name=f"xds-write-{session.id}")
            await self._read(session, ws)
        finally:
            if unsubscribe is not None:
                unsubscribe()
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            self.sessions.pop(session.id, None)
            self._sockets.pop(session.id, None)
            log.info("xds: %s disconnected (acked %s)", session.node, session.acked_version)
            self._notify()
        return ws

    async def shutdown(self, app: web.Application | None = None) -> None:
        """Close every session (1001 going away), so clients reconnect elsewhere at once."""
        for ws in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def _authenticate(self, request: web.Request) -> Any:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("a bearer token is required")
        try:
            principal = await self.authenticate(token.strip())
        except web.HTTPException:
            raise
        except Exception as exc:
            log.warning("xds: cannot authenticate %s: %s", request.remote, exc)
            raise web.HTTPServiceUnavailable(text="cannot authenticate now\n") from exc
        if not principal:
            raise _unauthorized("the token was not accepted")
        return principal

    async def _hello(self, ws: web.WebSocketResponse) -> Hello | None:
        try:
            msg = await ws.receive(timeout=self.hello_timeout)
        except TimeoutError:
            await _violation(ws, "no hello")
            return None
        if msg.type != WSMsgType.TEXT:
            if msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                await _violation(ws, "expected a hello text frame")
            return None
        try:
            hello = decode_client(msg.data)
        except ProtocolError as exc:
            await _violation(ws, str(exc))
            return None
        if not isinstance(hello, Hello):
            await _violation(ws, "the first message must be a hello")
            return None
        return hello

    async def _read(self, session: Session, ws: web.WebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await _violation(ws, "binary frames are not part of the protocol")
                break
            try:
                message = decode_client(msg.data)
            except ProtocolError as exc:
                log.warning("xds: %s sent a malformed message: %s", session.node, exc)
                await _violation(ws, str(exc))
                break
            if isinstance(message, Ack):
                session.acked_version = message.version
            elif isinstance(message, Nack):
                session.nack = (message.version, message.error)
                log.warning(
                    "xds: %s rejected version %s: %s", session.node, message.version, message.error
                )
            else:  # a hello on an open connection asks for a resync
                self._restart(session, message)
            self._notify()

    def _restart(self, session: Session, hello: Hello) -> None:
        # Whatever was queued is superseded: the first message after a hello stands alone.
        session._queue.clear()
        session._queue.append(self.store.resume(hello.resource_versions))
        session._wake.set()

    def _push(self, session: Session, delta: Delta) -> None:
        if len(session._queue) >= self.queue_limit:
            # Too slow: forget the deltas, send the state they lead to.  The store already
            # holds this delta's result, so the snapshot covers it.
            session._queue.clear()
            session._queue.append(self.store.snapshot())
            session.coalesced += 1
        else:
            session._queue.append(delta)
        session._wake.set()

    async def _write(self, session: Session, ws: web.WebSocketResponse) -> None:
        try:
            while True:
                await session._wake.wait()
                session._wake.clear()
                while session._queue:
                    message = session._queue.popleft()
                    await ws.send_str(encode(message))
                    session.sent_version = message.version
                    if isinstance(message, Snapshot):
                        session.snapshots_sent += 1
                    else:
                        session.deltas_sent += 1
        except (ConnectionError, RuntimeError) as exc:
            # The peer went away mid-send; closing ends the reader too.
            log.info("xds: sending to %s failed: %s", session.node, exc)
            with contextlib.suppress(Exception):
                await ws.close()
        except Exception:
            log.exception("xds: writer for %s failed", session.node)
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.INTERNAL_ERROR)


def xds_handler(
    store: ResourceStore,
    authenticate: Authenticator,
    *,
    queue_limit: int = 16,
    hello_timeout: float = 10.0,
    heartbeat: float | None = 20.0,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler for ``GET /v1/xds``: ``app.router.add_get(XDS_PATH, xds_handler(...))``.

    It is the ``handle`` method of an ``XdsEndpoint`` (``handler.__self__``), which exposes
    ``sessions`` and ``wait``; add its ``shutdown`` to ``app.on_shutdown``, or use
    ``install``, which does both and returns the endpoint.
    """
    endpoint = XdsEndpoint(
        store,
        authenticate,
        queue_limit=queue_limit,
        hello_timeout=hello_timeout,
        heartbeat=heartbeat,
    )
    return endpoint.handle


def install(
    app: web.Application,
    store: ResourceStore,
    authenticate: Authenticator,
    path: str = XDS_PATH,
    **options: Any,
) -> XdsEndpoint:
    """Add the endpoint at ``path`` and its shutdown hook to ``app``."""
    endpoint = XdsEndpoint(store, authenticate, **options)
    app.router.add_get(path, endpoint.handle)
    app.on_shutdown.append(endpoint.shutdown)
    return endpoint


def _unauthorized(reason: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        text=f"{reason}\n", headers={"WWW-Authenticate": 'Bearer realm="ambient-xds"'}
    )


async def _violation(ws: web.WebSocketResponse, reason: str) -> None:
    log.warning("xds: closing a session: %s", reason)
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode()[:120])
