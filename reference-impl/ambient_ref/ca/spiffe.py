"""SPIFFE identities as Istio names workloads: ``spiffe://<trust domain>/ns/<ns>/sa/<sa>``.

A workload's identity is its Kubernetes service account, qualified by namespace and
by the mesh's trust domain.  Everything that authorizes by identity (the CA deciding
what it may sign, ztunnel matching a peer's certificate against a policy principal)
needs the same strict reading of that URI, so it lives here once: a string that is
not exactly of this shape is not an identity, rather than something "close enough".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "spiffe://"

# SPIFFE trust domains are lowercase letters, digits, dots, dashes and underscores.
_TRUST_DOMAIN = r"[a-z0-9._-]+"
# A namespace is a DNS label; a service account name is a DNS subdomain (Kubernetes rules).
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"
_SPIFFE_RE = re.compile(
    rf"spiffe://(?P<td>{_TRUST_DOMAIN})/ns/(?P<ns>{_DNS_LABEL})/sa/(?P<sa>{_DNS_SUBDOMAIN})"
)


@dataclass(frozen=True)
class SpiffeId:
    """A parsed workload identity; ``str()`` gives back the canonical URI."""

    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def account(self) -> tuple[str, str]:
        """``(namespace, service account)``: the part Kubernetes knows about."""
        return (self.namespace, self.service_account)


def parse_spiffe_id(uri: str) -> SpiffeId:
    """Parse an Istio workload SPIFFE ID, raising ``ValueError`` for anything else.

    The match is exact (no port, query, fragment, trailing slash or upper case), because
    a lenient parser would let two different strings name the same identity, and the
    CA and ztunnel compare identities as strings.
    """
    m = _SPIFFE_RE.fullmatch(uri) if isinstance(uri, str) else None
    if m is None:
        raise ValueError(f"not a workload SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>): {uri!r}")
    return SpiffeId(m["td"], m["ns"], m["sa"])


def check_trust_domain(trust_domain: str) -> str:
    """Return ``trust_domain`` if it is a valid SPIFFE trust domain, else raise ``ValueError``."""
    if not isinstance(trust_domain, str) or not re.fullmatch(_TRUST_DOMAIN, trust_domain):
        raise ValueError(f"not a SPIFFE trust domain: {trust_domain!r}")
    return trust_domain


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The canonical identity URI of a service account, validated by a round trip."""
    return str(parse_spiffe_id(str(SpiffeId(trust_domain, namespace, service_account))))
