"""The mesh certificate authority: SPIFFE certificates for workload identities.

- ``spiffe``: the identity format, ``spiffe://<trust domain>/ns/<ns>/sa/<sa>``.
- ``authority``: the root (or intermediate) key and what it agrees to sign.
- ``server``: the HTTPS endpoint deciding who may obtain which identity (its module
  docstring is the wire protocol), with TokenReview and pod-listing backends.
- ``client``: ztunnel's side: keys, CSRs, checking answers, renewal at half-life.
- ``bootstrap``: the cluster's root kept in a Secret and published in ConfigMaps.
- ``kube`` and ``tls``: the few Kubernetes REST calls, and PEM-in-memory TLS contexts.
"""

from .authority import CertificateAuthority, CSRRejected
from .spiffe import SpiffeId, parse_spiffe_id, spiffe_id

__all__ = ["CSRRejected", "CertificateAuthority", "SpiffeId", "parse_spiffe_id", "spiffe_id"]
