"""HBONE: TCP tunnelled through HTTP/2 CONNECT over mutual TLS, as ztunnel speaks it.

Layers, bottom up:

* :mod:`ambient_ref.identity` - SPIFFE identities and reading them off certificates
  (shared with the CA and authorization; :mod:`.identity` re-exports it);
* :mod:`.tls` - SSL contexts from PEM and the post-handshake identity checks;
* :mod:`.session` - the sans-IO HTTP/2 core: a :class:`Session` of :class:`Tunnel` streams;
* :mod:`.connection` - a session driven over a TLS stream;
* :mod:`.client` - :class:`HboneClient`, the connection pool that opens tunnels;
* :mod:`.server` - :class:`HboneServer`, which answers CONNECTs through a handler;
* :mod:`.relay` - splicing a tunnel to a TCP connection with FIN/RST preserved.
"""

from ..identity import Identity, IdentityError, parse, peer_identity
from .client import HboneClient, PoolKey, SocketFactory, default_connect
from .connection import HboneConnection, reset_transport, set_nodelay
from .errors import (
    ConnectRejected,
    HboneConnectionError,
    HboneError,
    PeerVerificationError,
    StreamReset,
)
from .relay import RelayResult, relay
from .server import ConnectRequest, ConnectResponse, HboneServer, Listener
from .session import Http2Settings, Session, Tunnel
from .tls import ClientContext, ServerContext, WorkloadCertificate, client_context, server_context

__all__ = [
    "ClientContext",
    "ConnectRejected",
    "ConnectRequest",
    "ConnectResponse",
    "HboneClient",
    "HboneConnection",
    "HboneConnectionError",
    "HboneError",
    "HboneServer",
    "Http2Settings",
    "Identity",
    "IdentityError",
    "Listener",
    "PeerVerificationError",
    "PoolKey",
    "RelayResult",
    "ServerContext",
    "Session",
    "SocketFactory",
    "StreamReset",
    "Tunnel",
    "WorkloadCertificate",
    "client_context",
    "default_connect",
    "parse",
    "peer_identity",
    "relay",
    "reset_transport",
    "server_context",
    "set_nodelay",
]
