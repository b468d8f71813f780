"""``ssl.SSLContext`` helpers for certificates and keys held in memory as PEM.

Python's ``ssl`` module loads a certificate chain and private key only from files,
while the CA hands out certificates as bytes and rotates them every few hours.  These
helpers write the PEM to a private temporary directory just long enough for OpenSSL
to read it, so that no caller keeps key material on disk or repeats this dance.
"""

from __future__ import annotations

import os
import ssl
import tempfile


def load_cert_chain_pem(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """Install a certificate chain (leaf first) and its private key into ``ctx``."""
    with tempfile.TemporaryDirectory(prefix="ambient-ref-tls-") as tmp:
        os.chmod(tmp, 0o700)
        cert_path = os.path.join(tmp, "chain.pem")
        key_path = os.path.join(tmp, "key.pem")
        for path, data in ((cert_path, chain_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert_path, key_path)


def server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context presenting ``chain_pem``; clients are not asked for certificates."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_cert_chain_pem(ctx, chain_pem, key_pem)
    return ctx


def client_context(root_pem: bytes) -> ssl.SSLContext:
    """A TLS client context that trusts only ``root_pem`` and checks the server's name.

    Only the mesh root is trusted, not the system store: a workload talking to its CA
    must not accept a certificate some public CA issued for the same name.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=root_pem.decode("ascii"))
    return ctx
