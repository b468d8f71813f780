"""How an HBONE tunnel can fail, as exceptions a proxy can act on.

A proxy has to map each failure onto what the application sees: a rejected CONNECT
(400/401/503) and a broken tunnel both end in a reset of the application's TCP
connection, but they are logged and counted differently, so they are told apart here.
"""

from __future__ import annotations

from h2.errors import ErrorCodes


class HboneError(Exception):
    """Base of every HBONE failure.

    ``status`` is the HTTP status of a rejected CONNECT and ``None`` for failures that
    never produced a response (resets, TLS and connection errors).
    """

    def __init__(self, status: int | None = None, message: str = "") -> None:
        self.status = status
        self.message = message or (f"CONNECT rejected with status {status}" if status else "")
        super().__init__(self.message)


class ConnectRejected(HboneError):
    """The server answered the CONNECT with a non-200 status.

    400 means a malformed request or an authority that does not match the connection,
    401 an authorization policy denial, 503 that the server could not reach the
    destination.  ``body`` is whatever the server sent with it (usually nothing).
    """

    def __init__(self, status: int, body: bytes = b"") -> None:
        detail = f": {body[:200].decode('utf-8', 'replace')}" if body else ""
        super().__init__(status, f"CONNECT rejected with status {status}{detail}")
        self.body = body


class StreamReset(HboneError):
    """The tunnel's HTTP/2 stream was reset (RST_STREAM), by the peer or locally.

    A peer reset is how the far side says "the TCP connection behind me broke"; the
    proxy must reset the application's connection in turn (curl then exits with 56).
    """

    def __init__(self, error_code: int, *, remote: bool) -> None:
        self.error_code = error_code
        self.remote = remote
        who = "peer" if remote else "local side"
        super().__init__(None, f"stream reset by the {who} ({error_name(error_code)})")


class HboneConnectionError(HboneError):
    """The TLS/HTTP/2 connection carrying the tunnel failed or was closed.

    Covers TCP connect failures, TLS handshake failures (the server refusing our
    certificate shows up here, since TLS 1.3 reports it after the client's handshake),
    HTTP/2 protocol errors, GOAWAY and the connection dropping under open tunnels.
    """

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class PeerVerificationError(HboneConnectionError):
    """The peer's certificate chained to our roots but its identity is not acceptable.

    On the server: the client is outside the trust domain.  On the client: the server
    is not one of the identities expected for the destination.
    """


def error_name(code: int) -> str:
    """A readable name for an HTTP/2 error code, tolerating codes h2 does not know."""
    try:
        return ErrorCodes(code).name
    except ValueError:
        return f"0x{code:x}"
