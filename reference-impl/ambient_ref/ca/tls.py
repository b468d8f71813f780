"""``ssl.SSLContext`` helpers for the CA's HTTPS: certificates held in memory as PEM.

The CA hands out certificates as bytes and rotates them every few hours; loading them
into a context goes through :mod:`ambient_ref.pem`, shared with HBONE's mutual TLS.
These contexts are plain server-authenticated HTTPS (TLS 1.2 or later), unlike HBONE's.
"""

from __future__ import annotations

import ssl

from ..pem import Pem, load_cert_chain_pem, load_roots_pem

__all__ = ["client_context", "load_cert_chain_pem", "server_context"]


def server_context(chain_pem: Pem, key_pem: Pem) -> ssl.SSLContext:
    """A TLS server context presenting ``chain_pem``; clients are not asked for certificates."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_cert_chain_pem(ctx, chain_pem, key_pem)
    return ctx


def client_context(root_pem: Pem) -> ssl.SSLContext:
    """A TLS client context that trusts only ``root_pem`` and checks the server's name.

    Only the mesh root is trusted, not the system store: a workload talking to its CA
    must not accept a certificate some public CA issued for the same name.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_roots_pem(ctx, root_pem)
    return ctx
