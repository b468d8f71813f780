"""A pod's open inbound connections, authorized again whenever policies change.

An AuthorizationPolicy is not only a gate for new connections: real ztunnel registers
every inbound connection it authorized (HBONE and plaintext passthrough alike) with its
connection manager, and on each policy change its ``PolicyWatcher`` asserts the
policies again for every open one and closes those no longer allowed ("connection ...
closed because it's no longer allowed after a policy update": istio/ztunnel
``src/proxy/connection_manager.rs``, ``PolicyWatcher::run``; registration in
``ConnectionManager::assert_rbac``, called by ``src/proxy/inbound.rs`` and
``inbound_passthrough.rs``).  So a DENY covers connections opened before it too.

The registry holds, per connection, what it was authorized with and the socket toward
the application; closing resets that socket, which ends the relay and so the client's
connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..hbone import reset_transport
from ..policy.evaluate import Connection

log = logging.getLogger("ztunnel.connections")


@dataclass(eq=False)
class Inbound:
    """One open inbound connection: its facts as authorized, and the socket to close."""

    connection: Connection
    writer: asyncio.StreamWriter


class InboundConnections:
    def __init__(self) -> None:
        self._open: set[Inbound] = set()

    def __len__(self) -> int:
        return len(self._open)

    def track(self, connection: Connection, writer: asyncio.StreamWriter) -> Inbound:
        entry = Inbound(connection, writer)
        self._open.add(entry)
        return entry

    def untrack(self, entry: Inbound) -> None:
        self._open.discard(entry)

    def recheck(self, allowed: Callable[[Connection], bool]) -> int:
        """Close every open connection ``allowed`` now refuses; how many were closed.
        Connections that ended without being untracked are dropped on the way."""
        closed = 0
        for entry in list(self._open):
            if entry.writer.is_closing():
                self._open.discard(entry)
            elif not allowed(entry.connection):
                self._open.discard(entry)
                reset_transport(entry.writer)
                closed += 1
                source = entry.connection.source
                log.info("connection from %s (%s) to %s:%d closed because it's no longer "
                         "allowed after a policy update", source.ip, source.identity,
                         entry.connection.destination_ip, entry.connection.destination_port)
        return closed
