"""The waypoint's HTTP/1.1 proxy engine for one downstream byte stream.

The waypoint terminates an HBONE tunnel and finds HTTP/1.1 inside (facts file,
section 5: ``main_internal`` applies authz, routing and telemetry). This module is that
stage, reduced to what the conformance tests observe: for each request on the
tunnel it asks ``decide`` what to do (deny, reply locally, or forward to an upstream),
carries the exchange through, and counts it in ``istio_requests_total``.

Design choices, and why:

* **h11, sans-IO.** Parsing and framing (Content-Length, chunked, HTTP/1.0,
  ``Connection: close``, pipelining) are h11's; this module only moves bytes, so the
  proxy logic stays readable and the HTTP edge cases stay correct.
* **Injected policy, upstreams and labels.** ``decide``, ``connect_upstream`` and
  ``metrics_labels`` are callables, so the engine does not know about xDS, identities
  or HBONE and can be tested against plain loopback sockets.
* **Envoy's visible behaviour.** Local replies use Envoy's bodies and response flags
  (``RBAC: access denied``; 503 ``upstream connect error or disconnect/reset before
  headers`` with ``UF``/``UC``; 504 ``upstream request timeout`` with ``UT``; ``FI``
  and ``DI`` for faults), because tests and users match on them.
* **Retries replay a bounded copy of the request body.** Like Envoy's retry buffer:
  the body is streamed upstream while a copy of up to :data:`REPLAY_LIMIT` bytes is
  kept; a larger body is not retried.
* **The whole request body is sent before the response is read.** Simpler than full
  duplex, and enough for request/response HTTP; an upstream that answers early is
  still handled, because its response is read afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

import h11

from ambient_ref.waypoint.telemetry import HttpMetrics, RequestLabels

__all__ = [
    "REPLAY_LIMIT",
    "ByteReader",
    "ByteWriter",
    "ConnectUpstream",
    "Decide",
    "Decision",
    "Deny",
    "Forward",
    "LocalReply",
    "MetricsLabels",
    "Request",
    "RetryPolicy",
    "serve_http",
]

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
REPLAY_LIMIT = 1024 * 1024
"""Bytes of request body kept for retries (Envoy's default retry buffer is 1 MiB-ish)."""

# Per-connection headers (RFC 9110 section 7.6.1) that a proxy must not forward;
# framing headers are rebuilt by h11 on each side.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

UPSTREAM_RESET_BODY = "upstream connect error or disconnect/reset before headers"


# -- the streams ----------------------------------------------------------------------------


class ByteReader(Protocol):
    """The reading half of a byte stream (``asyncio.StreamReader`` or an HBONE tunnel)."""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes; ``b""`` at end of stream."""
        ...


class ByteWriter(Protocol):
    """The writing half of a byte stream (``asyncio.StreamWriter`` or an HBONE tunnel)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...


# -- requests and decisions -----------------------------------------------------------------


@dataclass
class Request:
    """One downstream request's head, as ``decide`` and ``metrics_labels`` see it.

    Header names are lower-case and in wire order; values are decoded as latin-1 (the
    HTTP/1.1 default), so they round-trip byte for byte.
    """

    method: str
    target: str
    headers: list[tuple[str, str]]
    http_version: str = "1.1"

    def header(self, name: str) -> str | None:
        """The first value of ``name``, or ``None``."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    @property
    def authority(self) -> str:
        """The ``Host`` header, which routing matches on (HTTP/1.1's ``:authority``)."""
        return self.header("host") or ""

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        """The query string, without ``?``, or ``""``."""
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass(frozen=True)
class Deny:
    """An authorization denial: Envoy's RBAC filter answers 403 ``RBAC: access denied``."""

    status: int = 403
    body: str = "RBAC: access denied"
    response_flags: str = "-"


@dataclass(frozen=True)
class LocalReply:
    """A response the waypoint makes itself: fault abort (flag ``FI``), direct
    response, invalid backend (500), no healthy upstream (503, ``UH``)...

    ``delay`` is a fault delay applied before replying (then add ``DI`` to the flags).
    """

    status: int
    body: str = ""
    response_flags: str = "-"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0


@dataclass(frozen=True)
class RetryPolicy:
    """Istio's ``HTTPRetry`` in Envoy terms.

    ``attempts`` is the number of *retries* (at most ``1 + attempts`` tries); ``retry_on``
    holds Envoy's conditions: ``5xx``, ``gateway-error``, ``connect-failure``, ``reset``,
    ``retriable-status-codes`` or bare status codes such as ``"503"`` (which Istio turns
    into retriable status codes).
    """

    attempts: int = 0
    retry_on: frozenset[str] = frozenset()
    per_try_timeout: float | None = None

    @classmethod
    def parse(
        cls, attempts: int, retry_on: str = "", per_try_timeout: float | None = None
    ) -> RetryPolicy:
        """From the VirtualService form: ``retryOn: "5xx,connect-failure"``."""
        conditions = frozenset(c.strip() for c in retry_on.split(",") if c.strip())
        return cls(attempts=attempts, retry_on=conditions, per_try_timeout=per_try_timeout)

    def on_status(self, status: int) -> bool:
        """Whether a response with ``status`` should be retried."""
        if "5xx" in self.retry_on and 500 <= status <= 599:
            return True
        if "gateway-error" in self.retry_on and status in (502, 503, 504):
            return True
        return str(status) in self.retry_on

    def on_connect_failure(self) -> bool:
        return bool(self.retry_on & {"5xx", "gateway-error", "connect-failure"})

    def on_reset(self) -> bool:
        return bool(self.retry_on & {"5xx", "gateway-error", "reset"})

    def on_per_try_timeout(self) -> bool:
        return bool(self.retry_on & {"5xx", "gateway-error"})


@dataclass(frozen=True)
class Forward:
    """Send the request to ``upstream`` (a key ``connect_upstream`` understands).

    ``timeout`` is the route timeout over all tries (Envoy's semantics; ``None`` is
    Istio's default of no timeout). ``delay`` is a fault delay (flag ``DI``). Header
    operations are applied in Envoy's order: remove, then set, then add.
    """

    upstream: Hashable
    delay: float = 0.0
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    set_headers: Mapping[str, str] = field(default_factory=dict)
    add_headers: tuple[tuple[str, str], ...] = ()
    remove_headers: tuple[str, ...] = ()


Decision = Deny | LocalReply | Forward
Decide = Callable[[Request], Awaitable[Decision]]
ConnectUpstream = Callable[[Hashable], Awaitable[tuple[ByteReader, ByteWriter]]]
MetricsLabels = Callable[[Request, Decision, int], RequestLabels]


# -- plumbing ---------------------------------------------------------------------------------


class _UpstreamConnectError(Exception):
    """``connect_upstream`` failed: no stream, nothing sent (flag ``UF``)."""


class _UpstreamReset(Exception):
    """The upstream broke or closed the connection before a complete response head
    (flag ``UC``)."""


class _DownstreamBroken(Exception):
    """The downstream sent a malformed body or went away mid-request.

    Kept apart from upstream failures so that a client's mistake is never retried or
    blamed on the upstream. ``status`` is h11's hint for the error reply.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


class _Peer:
    """An h11 connection bound to a byte stream: events in, events out."""

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER], r: ByteReader, w: ByteWriter):
        self.conn = h11.Connection(role)
        self.reader = r
        self.writer = w

    async def send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.reader.read(READ_SIZE))

    @property
    def reusable(self) -> bool:
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        wait_closed = getattr(self.writer, "wait_closed", None)
        if wait_closed is not None:
            with contextlib.suppress(Exception):
                await wait_closed()


class _Upstream(_Peer):
    def __init__(self, key: Hashable, r: ByteReader, w: ByteWriter) -> None:
        super().__init__(h11.CLIENT, r, w)
        self.key = key
        self.reused = False


class _RequestBody:
    """The downstream request body, read once from the wire and replayable for retries
    while it fits in :data:`REPLAY_LIMIT`."""

    def __init__(self, downstream: _Peer) -> None:
        self._downstream = downstream
        self._kept: list[bytes] = []
        self._kept_size = 0
        self.size = 0
        self.complete = False
        self.overflowed = False
        self.started = False

    @property
    def replayable(self) -> bool:
        return not (self.started and self.overflowed)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body from its start: the kept copy, then the rest from downstream."""
        if self.started and self.overflowed:
            raise RuntimeError("request body is too large to replay")
        self.started = True
        for chunk in list(self._kept):
            yield chunk
        while not self.complete:
            chunk = await self._read()
            if chunk:
                yield chunk

    async def drain(self) -> None:
        """Read and drop the rest of the body, so the connection can take the next request."""
        while not self.complete:
            await self._read()

    async def _read(self) -> bytes:
        try:
            event = await self._downstream.next_event()
        except h11.RemoteProtocolError as e:
            raise _DownstreamBroken(str(e), e.error_status_hint) from e
        except OSError as e:
            raise _DownstreamBroken(repr(e)) from e
        if isinstance(event, h11.Data):
            data = bytes(event.data)
            self.size += len(data)
            if not self.overflowed:
                if self._kept_size + len(data) <= REPLAY_LIMIT:
                    self._kept.append(data)
                    self._kept_size += len(data)
                else:
                    self.overflowed = True
                    self._kept.clear()
            return data
        if isinstance(event, h11.EndOfMessage):
            self.complete = True
            return b""
        # ConnectionClosed or PAUSED mid-body: the client went away.
        raise _DownstreamBroken("request body ended early")


@dataclass
class _Outcome:
    """What happened to one request, for telemetry and the keep-alive decision."""

    status: int = 0
    flags: list[str] = field(default_factory=list)
    response_bytes: int = 0
    close_downstream: bool = False

    @property
    def response_flags(self) -> str:
        return ",".join(self.flags) if self.flags else "-"


def _text_reply(
    status: int, body: str, extra: Iterable[tuple[str, str]] = ()
) -> tuple[h11.Response, bytes]:
    """Envoy's plain-text local reply, with any extra headers the decision asks for."""
    data = body.encode()
    headers = [
        ("content-length", str(len(data))),
        ("content-type", "text/plain"),
        ("server", "istio-envoy"),
        *extra,
    ]
    return h11.Response(status_code=status, headers=headers), data


# -- the engine ---------------------------------------------------------------------------


class _Session:
    """State of one ``serve_http`` call: the downstream connection and upstream pool."""

    def __init__(
        self,
        reader: ByteReader,
        writer: ByteWriter,
        decide: Decide,
        connect_upstream: ConnectUpstream,
        metrics_labels: MetricsLabels | None,
        metrics: HttpMetrics | None,
    ) -> None:
        self.down = _Peer(h11.SERVER, reader, writer)
        self.decide = decide
        self.connect_upstream = connect_upstream
        self.metrics_labels = metrics_labels
        self.metrics = metrics
        self.pool: dict[Hashable, list[_Upstream]] = {}

    async def run(self) -> None:
        try:
            while True:
                try:
                    event = await self.down.next_event()
                except h11.RemoteProtocolError as e:
                    await self._protocol_error(str(e), e.error_status_hint)
                    return
                if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return
                if not isinstance(event, h11.Request):
                    return  # cannot happen between requests; be defensive
                try:
                    keep_going = await self._handle(event)
                except _DownstreamBroken as e:
                    await self._protocol_error(str(e), e.status)
                    return
                if not keep_going or not self.down.reusable:
                    return
                self.down.conn.start_next_cycle()
        except (ConnectionError, h11.LocalProtocolError, h11.RemoteProtocolError) as e:
            log.debug("downstream connection ended: %r", e)
        except Exception:  # a reference proxy must not take the tunnel down with a traceback
            log.exception("waypoint HTTP session failed")
        finally:
            for conns in self.pool.values():
                for up in conns:
                    await up.close()
            self.pool.clear()
            await self.down.close()

    async def _protocol_error(self, reason: str, status: int) -> None:
        """Answer a malformed request with 400 (or h11's hint, e.g. 431) if no response
        has started, then close: after a framing error the stream cannot be trusted.

        The reply is written as raw bytes because h11 refuses to send once the peer's
        side is in its ERROR state."""
        log.debug("malformed downstream request: %s", reason)
        if self.down.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        if not 400 <= status < 500:
            status = 400
        phrase = HTTPStatus(status).phrase.encode()
        raw = (
            b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\ncontent-type: text/plain\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(phrase), phrase)
        )
        with contextlib.suppress(Exception):
            self.down.writer.write(raw)
            await self.down.writer.drain()

    async def _handle(self, event: h11.Request) -> bool:
        """Carry one request through; ``False`` closes the downstream connection."""
        started = time.monotonic()
        request = Request(
            method=event.method.decode("latin-1"),
            target=event.target.decode("latin-1"),
            headers=[(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers],
            http_version=event.http_version.decode("latin-1"),
        )
        if request.header("x-request-id") is None:
            request.headers.append(("x-request-id", str(uuid.uuid4())))
        body = _RequestBody(self.down)

        decision: Decision
        try:
            decision = await self.decide(request)
        except Exception:
            log.exception("decide() failed for %s %s", request.method, request.target)
            decision = LocalReply(500, "internal error in the waypoint")

        if isinstance(decision, Forward):
            outcome = await self._forward(request, decision, body)
        else:
            outcome = await self._local(decision, body)

        self._record(request, decision, outcome, body, started)
        return not outcome.close_downstream

    async def _local(self, decision: Deny | LocalReply, body: _RequestBody) -> _Outcome:
        """Reply without an upstream, keeping the connection usable when the body can be
        skipped."""
        outcome = _Outcome(status=decision.status)
        if decision.response_flags and decision.response_flags != "-":
            outcome.flags.extend(decision.response_flags.split(","))
        if isinstance(decision, LocalReply) and decision.delay > 0:
            await asyncio.sleep(decision.delay)
        # A client waiting for "100 Continue" may or may not send the body after a final
        # response, so the connection cannot be reused; otherwise skip the body.
        if self.down.conn.they_are_waiting_for_100_continue:
            outcome.close_downstream = True
        else:
            await body.drain()
        await self._send_local(decision.status, decision.body, outcome, extra=_extra(decision))
        return outcome

    async def _send_local(
        self,
        status: int,
        text: str,
        outcome: _Outcome,
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        response, data = _text_reply(status, text, extra)
        outcome.status = status
        await self.down.send(response)
        await self.down.send(h11.Data(data=data))
        await self.down.send(h11.EndOfMessage())
        outcome.response_bytes = len(data)

    async def _forward(self, request: Request, decision: Forward, body: _RequestBody) -> _Outcome:
        outcome = _Outcome()
        if decision.delay > 0:
            outcome.flags.append("DI")
            await asyncio.sleep(decision.delay)
        if self.down.conn.they_are_waiting_for_100_continue:
            await self.down.send(
                h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
            )

        head = _upstream_request(request, decision)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + decision.timeout if decision.timeout is not None else None
        retry = decision.retry
        failure: tuple[int, str, str] = (503, UPSTREAM_RESET_BODY, "UF")

        for attempt in range(1 + max(retry.attempts, 0)):
            last = attempt == retry.attempts
            if not body.replayable:
                break
            try_deadline = deadline
            if retry.per_try_timeout is not None:
                per_try = loop.time() + retry.per_try_timeout
                try_deadline = per_try if deadline is None else min(deadline, per_try)
            up: _Upstream | None = None
            try:
                async with asyncio.timeout_at(try_deadline):
                    up, response = await self._exchange(decision.upstream, head, body)
            except TimeoutError:
                if up is not None:
                    await up.close()
                failure = (504, "upstream request timeout", "UT")
                if deadline is not None and loop.time() >= deadline:
                    break  # the route timeout covers all tries
                if retry.on_per_try_timeout():
                    continue
                break
            except _UpstreamConnectError:
                failure = (
                    503,
                    f"{UPSTREAM_RESET_BODY}. reset reason: connection failure",
                    "UF",
                )
                if retry.on_connect_failure():
                    continue
                break
            except _UpstreamReset:
                failure = (
                    503,
                    f"{UPSTREAM_RESET_BODY}. reset reason: connection termination",
                    "UC",
                )
                if retry.on_reset():
                    continue
                break
            assert up is not None
            if not last and retry.on_status(response.status_code) and body.replayable:
                await up.close()  # cheaper than reading a body we will not use
                continue
            await self._relay(up, response, outcome, deadline)
            return outcome

        # Every try failed before a response head: answer locally, Envoy-style.
        status, text, flag = failure
        outcome.flags.append(flag)
        if not body.complete:
            await body.drain()
        await self._send_local(status, text, outcome)
        return outcome

    async def _exchange(
        self, key: Hashable, head: h11.Request, body: _RequestBody
    ) -> tuple[_Upstream, h11.Response]:
        """One try: send the request, return the connection and the response head.

        A pooled connection the upstream closed while idle fails at once; that is retried
        on a fresh connection without spending a retry, as a stale keep-alive connection
        is not the upstream's fault.
        """
        while True:
            up = await self._acquire(key)
            try:
                return up, await self._try(up, head, body)
            except _UpstreamReset:
                await up.close()
                if up.reused and body.replayable:
                    continue
                raise
            except BaseException:
                await up.close()
                raise

    async def _try(self, up: _Upstream, head: h11.Request, body: _RequestBody) -> h11.Response:
        try:
            await up.send(head)
            async for chunk in body.chunks():
                await up.send(h11.Data(data=chunk))
            await up.send(h11.EndOfMessage())
            while True:
                event = await up.next_event()
                if isinstance(event, h11.Response):
                    return event
                if isinstance(event, h11.InformationalResponse):
                    continue
                raise _UpstreamReset(f"unexpected {event!r}")
        except (OSError, h11.RemoteProtocolError, h11.LocalProtocolError) as e:
            raise _UpstreamReset(repr(e)) from e

    async def _acquire(self, key: Hashable) -> _Upstream:
        conns = self.pool.get(key)
        if conns:
            up = conns.pop()
            up.reused = True
            return up
        try:
            r, w = await self.connect_upstream(key)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # any way of not getting a stream is a connect failure
            raise _UpstreamConnectError(repr(e)) from e
        return _Upstream(key, r, w)

    async def _relay(
        self, up: _Upstream, response: h11.Response, outcome: _Outcome, deadline: float | None
    ) -> None:
        """Stream the upstream response downstream, then pool or close the upstream."""
        headers = [(k, v) for k, v in response.headers if k.decode("latin-1") not in HOP_BY_HOP]
        # Keep the upstream's Content-Length; h11 re-frames everything else (chunked for
        # HTTP/1.1 clients, close-delimited for HTTP/1.0 ones).
        outcome.status = response.status_code
        try:
            await self.down.send(
                h11.Response(
                    status_code=response.status_code, headers=headers, reason=response.reason
                )
            )
            async with asyncio.timeout_at(deadline):
                while True:
                    try:
                        event = await up.next_event()
                    except (OSError, h11.RemoteProtocolError) as e:
                        raise _UpstreamReset(repr(e)) from e
                    if isinstance(event, h11.Data):
                        outcome.response_bytes += len(event.data)
                        await self.down.send(h11.Data(data=event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        raise _UpstreamReset(f"unexpected {event!r}")
        except (TimeoutError, _UpstreamReset) as e:
            # The head is already downstream: the only honest signal left is to cut the
            # connection, as Envoy resets the stream.
            outcome.flags.append("UT" if isinstance(e, TimeoutError) else "UC")
            outcome.close_downstream = True
            await up.close()
            return
        except BaseException:
            await up.close()  # the downstream went away: the upstream is mid-response
            raise
        await self.down.send(h11.EndOfMessage())
        if up.reusable:
            up.conn.start_next_cycle()
            up.reused = False
            self.pool.setdefault(up.key, []).append(up)
        else:
            await up.close()

    def _record(
        self,
        request: Request,
        decision: Decision,
        outcome: _Outcome,
        body: _RequestBody,
        started: float,
    ) -> None:
        if self.metrics is None or self.metrics_labels is None or not outcome.status:
            return
        try:
            labels = self.metrics_labels(request, decision, outcome.status)
            self.metrics.record(
                labels,
                outcome.status,
                (time.monotonic() - started) * 1000.0,
                body.size,
                outcome.response_bytes,
                response_flags=outcome.response_flags,
            )
        except Exception:  # telemetry must never break the data path
            log.exception("recording request metrics failed")


def _extra(decision: Deny | LocalReply) -> tuple[tuple[str, str], ...]:
    return decision.headers if isinstance(decision, LocalReply) else ()


def _upstream_request(request: Request, decision: Forward) -> h11.Request:
    """The request head sent upstream: hop-by-hop headers dropped, header operations
    applied, framing rebuilt for HTTP/1.1."""
    headers = [(k, v) for k, v in request.headers if k not in HOP_BY_HOP]
    removed = {h.lower() for h in decision.remove_headers}
    headers = [(k, v) for k, v in headers if k not in removed]
    for name, value in decision.set_headers.items():
        name = name.lower()
        headers = [(k, v) for k, v in headers if k != name]
        headers.append((name, value))
    headers.extend((k.lower(), v) for k, v in decision.add_headers)
    if request.header("transfer-encoding") is not None:
        headers.append(("transfer-encoding", "chunked"))
    if not any(k == "host" for k, _ in headers):
        headers.append(("host", request.authority or "localhost"))
    return h11.Request(
        method=request.method,
        target=request.target,
        headers=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    )


async def serve_http(
    reader: ByteReader,
    writer: ByteWriter,
    decide: Decide,
    connect_upstream: ConnectUpstream,
    metrics_labels: MetricsLabels | None = None,
    metrics: HttpMetrics | None = None,
) -> None:
    """Proxy every HTTP/1.1 request on one downstream stream until it closes.

    ``decide`` is asked once per request, after the head and before the body is read.
    ``connect_upstream(key)`` opens a stream to ``Forward.upstream``; connections are
    kept per key for this stream while the upstream keeps them alive. Each finished
    request is recorded in ``metrics`` with ``metrics_labels(request, decision, status)``.
    Never raises for network or protocol errors; it closes ``writer`` when done.
    """
    session = _Session(reader, writer, decide, connect_upstream, metrics_labels, metrics)
    await session.run()
