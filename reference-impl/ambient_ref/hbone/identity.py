"""SPIFFE identities for HBONE, which live in :mod:`ambient_ref.identity`.

The CA, HBONE and authorization all read identities the same way, so the one module
is shared; this name stays so that ``ambient_ref.hbone.identity`` keeps working.
"""

from ..identity import (
    SPIFFE_PREFIX,
    Identity,
    IdentityError,
    as_identity,
    certificate_identity,
    parse,
    peer_identity,
    uri_sans,
)

__all__ = [
    "SPIFFE_PREFIX",
    "Identity",
    "IdentityError",
    "as_identity",
    "certificate_identity",
    "parse",
    "peer_identity",
    "uri_sans",
]
