"""Loading certificates and keys held in memory as PEM into an ``ssl.SSLContext``.

Certificates here are short-lived and arrive as bytes (from the CA, or from a Secret),
but Python's ``ssl`` reads a certificate chain and private key only from files.  This
is the one place that bridges the two, so the CA's HTTPS endpoint and HBONE's mutual
TLS do not each keep their own copy of key-handling code.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator

Pem = bytes | str


def pem_bytes(pem: Pem) -> bytes:
    """PEM as bytes; PEM is ASCII, so a ``str`` (as read from JSON or YAML) converts exactly."""
    return pem.encode("ascii") if isinstance(pem, str) else pem


def load_cert_chain_pem(ctx: ssl.SSLContext, chain_pem: Pem, key_pem: Pem) -> None:
    """Install a certificate chain (leaf first) and its private key into ``ctx``."""
    with _pem_files(pem_bytes(chain_pem), pem_bytes(key_pem)) as (cert_path, key_path):
        ctx.load_cert_chain(cert_path, key_path)


def load_roots_pem(ctx: ssl.SSLContext, root_pem: Pem) -> None:
    """Trust the PEM certificates in ``root_pem`` (one or more) for verifying peers."""
    ctx.load_verify_locations(cadata=pem_bytes(root_pem).decode("ascii"))


@contextlib.contextmanager
def _pem_files(*blobs: bytes) -> Iterator[list[str]]:
    """Paths holding ``blobs``, only for as long as OpenSSL needs to read them.

    On Linux these are anonymous memory files, so private keys never touch a disk;
    elsewhere a private temporary directory is used and removed straight after.
    """
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fds = [os.memfd_create("ambient-ref-pem", os.MFD_CLOEXEC) for _ in blobs]
        try:
            for fd, blob in zip(fds, blobs, strict=True):
                with os.fdopen(os.dup(fd), "wb") as f:
                    f.write(blob)
            yield [f"/proc/self/fd/{fd}" for fd in fds]
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="ambient-ref-pem-") as tmp:
        paths = []
        for i, blob in enumerate(blobs):
            path = os.path.join(tmp, f"{i}.pem")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(blob)
            paths.append(path)
        yield paths


__all__ = ["Pem", "load_cert_chain_pem", "load_roots_pem", "pem_bytes"]
