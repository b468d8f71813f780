"""The mesh certificate authority: SPIFFE certificates for workload identities.

- ``authority``: the root (or intermediate) key and what it agrees to sign.
- ``server``: the HTTPS endpoint deciding who may obtain which identity (its module
  docstring is the wire protocol), with TokenReview and pod-listing backends.
- ``client``: ztunnel's side: keys, CSRs, checking answers, renewal at half-life.
- ``bootstrap``: the cluster's root kept in a Secret and published in ConfigMaps.
- ``tls``: the HTTPS contexts of the CA and its clients.

The identity format, ``spiffe://<trust domain>/ns/<ns>/sa/<sa>``, is
:mod:`ambient_ref.identity` (shared with HBONE and authorization), the Kubernetes
calls go through :mod:`ambient_ref.kube`, and PEM loading is :mod:`ambient_ref.pem`.
"""

from ..identity import SpiffeId, parse_spiffe_id, spiffe_id
from .authority import CertificateAuthority, CSRRejected

__all__ = ["CSRRejected", "CertificateAuthority", "SpiffeId", "parse_spiffe_id", "spiffe_id"]
