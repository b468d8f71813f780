"""Mutual TLS for HBONE: SSL contexts built from PEM material, plus identity checks.

The rules (from ztunnel): TLS 1.3 only, ALPN ``h2`` both ways, no SNI, no session
resumption, and both sides present certificates chaining to the mesh roots.  Chain
verification is OpenSSL's job; identity verification is ours, because Python's
``ssl`` cannot match URI SANs:

* the server accepts any client whose SPIFFE identity is in its own trust domain
  (ztunnel's ``TrustDomainVerifier``), checked by :meth:`ServerContext.verify_peer`;
* the client accepts a server only if its identity is one of those expected for the
  destination (``IdentityVerifier``), checked by :meth:`ClientContext.verify_peer`.

Both checks run right after the handshake, before any HTTP/2 byte is exchanged, and
the connection is aborted on failure.

Certificates rotate (24 h lifetime, renewed at half-life), so contexts are built from
in-memory PEM and cached on a :class:`WorkloadCertificate`: rotating means building a
new ``WorkloadCertificate``; connections already open keep the context they started with.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from cryptography import x509

from ..identity import Identity, IdentityError, certificate_identity, peer_identity
from ..pem import Pem, load_cert_chain_pem, load_roots_pem, pem_bytes
from .errors import PeerVerificationError

ALPN_H2 = "h2"


class ServerContext(ssl.SSLContext):
    """An SSLContext for the HBONE server that knows which trust domain it admits."""

    identity: Identity
    trust_domain: str

    def verify_peer(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> Identity:
        """The client's identity, if it is a SPIFFE identity in our trust domain.

        Raises PeerVerificationError otherwise; the caller aborts the connection.
        """
        return verify_client_identity(ssl_object, self.trust_domain)


class ClientContext(ssl.SSLContext):
    """An SSLContext for the HBONE client; the expected server identities vary per
    destination, so they are passed to :meth:`verify_peer` rather than stored."""

    identity: Identity

    def verify_peer(
        self, ssl_object: ssl.SSLObject | ssl.SSLSocket, expected: Collection[Identity]
    ) -> Identity:
        """The server's identity, if it is one of ``expected`` and ALPN chose ``h2``."""
        return verify_server_identity(ssl_object, expected)


def server_context(
    cert_chain_pem: Pem, key_pem: Pem, root_pem: Pem, *, trust_domain: str | None = None
) -> ServerContext:
    """A server context presenting ``cert_chain_pem`` and requiring client certificates.

    ``trust_domain`` defaults to the trust domain of our own certificate, which is what
    ztunnel admits.  ``cert_chain_pem`` is the leaf followed by any intermediates.
    """
    ctx = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(ctx, cert_chain_pem, key_pem, root_pem)
    ctx.identity = _leaf_identity(cert_chain_pem)
    ctx.trust_domain = trust_domain or ctx.identity.trust_domain
    return ctx


def client_context(cert_chain_pem: Pem, key_pem: Pem, root_pem: Pem) -> ClientContext:
    """A client context presenting ``cert_chain_pem`` and verifying the server's chain.

    ``check_hostname`` is off because HBONE sends no SNI and servers carry no DNS
    names; connect with ``server_hostname=None`` and call :meth:`ClientContext.verify_peer`.
    """
    ctx = ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    _configure(ctx, cert_chain_pem, key_pem, root_pem)
    ctx.identity = _leaf_identity(cert_chain_pem)
    return ctx


def verify_client_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, trust_domain: str
) -> Identity:
    """Server-side check: the client's SPIFFE identity must be in ``trust_domain``."""
    identity = _identity_of_peer(ssl_object)
    if identity.trust_domain != trust_domain:
        raise PeerVerificationError(
            f"client identity {identity} is outside trust domain {trust_domain!r}"
        )
    return identity


def verify_server_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, expected: Collection[Identity]
) -> Identity:
    """Client-side check: ALPN is ``h2`` and the server is one of ``expected``."""
    if ssl_object.selected_alpn_protocol() != ALPN_H2:
        raise PeerVerificationError(
            f"server did not negotiate ALPN {ALPN_H2!r} "
            f"(got {ssl_object.selected_alpn_protocol()!r})"
        )
    identity = _identity_of_peer(ssl_object)
    if identity not in expected:
        wanted = ", ".join(sorted(str(i) for i in expected)) or "(none)"
        raise PeerVerificationError(f"server identity {identity} is not one of: {wanted}")
    return identity


@dataclass(frozen=True, eq=False)
class WorkloadCertificate:
    """One workload's current certificate material, with contexts built on demand.

    ztunnel holds one per identity it serves and swaps in a new one at rotation; the
    contexts are cached on the instance so each rotation costs one build per role.
    """

    cert_chain_pem: bytes
    key_pem: bytes
    root_pem: bytes

    def __post_init__(self) -> None:
        for name in ("cert_chain_pem", "key_pem", "root_pem"):
            object.__setattr__(self, name, pem_bytes(getattr(self, name)))

    @cached_property
    def identity(self) -> Identity:
        """The SPIFFE identity of the leaf certificate."""
        return _leaf_identity(self.cert_chain_pem)

    @cached_property
    def not_after(self) -> datetime:
        """When the leaf expires (UTC), so the owner can schedule the rotation."""
        return x509.load_pem_x509_certificate(self.cert_chain_pem).not_valid_after_utc

    @cached_property
    def client(self) -> ClientContext:
        """The client context for this material (built once)."""
        return client_context(self.cert_chain_pem, self.key_pem, self.root_pem)

    @cached_property
    def server(self) -> ServerContext:
        """The server context for this material (built once)."""
        return server_context(self.cert_chain_pem, self.key_pem, self.root_pem)


def _identity_of_peer(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> Identity:
    try:
        return peer_identity(ssl_object)
    except IdentityError as exc:
        raise PeerVerificationError(f"peer has no usable identity: {exc}") from None


def _leaf_identity(cert_chain_pem: Pem) -> Identity:
    return certificate_identity(x509.load_pem_x509_certificate(pem_bytes(cert_chain_pem)))


def _configure(ctx: ssl.SSLContext, cert_chain_pem: Pem, key_pem: Pem, root_pem: Pem) -> None:
    """Settings shared by both roles."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    # No resumption: every connection proves its identity with a full handshake.
    ctx.options |= ssl.OP_NO_TICKET
    ctx.set_alpn_protocols([ALPN_H2])
    load_roots_pem(ctx, root_pem)
    load_cert_chain_pem(ctx, cert_chain_pem, key_pem)
