"""SPIFFE workload identities, as ambient mode names them.

Every workload in the mesh is identified by the URI SAN of its certificate,
``spiffe://<trust domain>/ns/<namespace>/sa/<service account>``.  The CA decides which
of these it may sign, the HBONE server checks a peer's trust domain, the HBONE client
checks a peer against the identities it expects, and authorization policies match on
them, so all of them read the URI here, once.  Any other URI shape is not an identity
(ztunnel refuses to parse it), so :func:`parse` is strict rather than forgiving.

Two levels of strictness, because the readers differ:

* :func:`parse` checks the *shape*: exactly those five segments, none empty.  That is
  what ztunnel requires of a peer's certificate, and all a verifier or a policy needs
  to compare identities.
* :func:`parse_spiffe_id` also checks the *names*: a SPIFFE trust domain, a Kubernetes
  namespace and a Kubernetes service-account name.  The CA uses it before signing,
  because two spellings (``Default`` and ``default``) must never both be certified:
  peers compare identities as strings.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from cryptography import x509

SPIFFE_PREFIX = "spiffe://"

# SPIFFE trust domains are lowercase letters, digits, dots, dashes and underscores.
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
# A namespace is a DNS label; a service account name is a DNS subdomain (Kubernetes rules).
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")


class IdentityError(ValueError):
    """A URI or certificate does not carry a well-formed SPIFFE workload identity."""


@dataclass(frozen=True, order=True)
class Identity:
    """A workload identity: the trust domain, namespace and service account it names.

    Frozen and ordered so identities can key pools and be compared in sets.
    """

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        # An empty or slash-carrying segment would format to a URI that parses back
        # differently, so such an identity cannot exist.
        for name in ("trust_domain", "namespace", "service_account"):
            value = getattr(self, name)
            if not value or "/" in value:
                raise IdentityError(f"identity {name} must be non-empty without '/': {value!r}")

    @classmethod
    def parse(cls, uri: str) -> Identity:
        """Parse ``spiffe://<td>/ns/<ns>/sa/<sa>``; any other shape raises IdentityError."""
        if not isinstance(uri, str) or not uri.startswith(SPIFFE_PREFIX):
            raise IdentityError(f"not a SPIFFE URI: {uri!r}")
        parts = uri[len(SPIFFE_PREFIX) :].split("/")
        if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise IdentityError(f"not a workload identity (spiffe://<td>/ns/<ns>/sa/<sa>): {uri!r}")
        try:
            return cls(parts[0], parts[2], parts[4])
        except IdentityError as exc:
            raise IdentityError(f"malformed SPIFFE identity {uri!r}: {exc}") from None

    @property
    def uri(self) -> str:
        """The URI form carried in certificates."""
        return f"{SPIFFE_PREFIX}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def principal(self) -> str:
        """The URI without ``spiffe://``: the form authorization policies match principals on."""
        return self.uri[len(SPIFFE_PREFIX) :]

    @property
    def account(self) -> tuple[str, str]:
        """``(namespace, service account)``: the part Kubernetes knows about."""
        return (self.namespace, self.service_account)

    @property
    def is_kubernetes_named(self) -> bool:
        """Whether every segment follows its naming rules (see :func:`parse_spiffe_id`)."""
        return bool(
            _TRUST_DOMAIN.fullmatch(self.trust_domain)
            and _DNS_LABEL.fullmatch(self.namespace)
            and _DNS_SUBDOMAIN.fullmatch(self.service_account)
        )

    def __str__(self) -> str:
        return self.uri


#: The CA's name for :class:`Identity`, kept so ``ambient_ref.ca.SpiffeId`` still works.
SpiffeId = Identity


def parse(uri: str) -> Identity:
    """Parse a SPIFFE workload identity URI (see :meth:`Identity.parse`)."""
    return Identity.parse(uri)


def as_identity(value: Identity | str) -> Identity:
    """Accept either form, so callers may pass identities straight from configuration."""
    return value if isinstance(value, Identity) else Identity.parse(value)


def parse_spiffe_id(uri: str) -> Identity:
    """Parse an Istio workload SPIFFE ID whose names follow the rules, else IdentityError.

    Beyond :func:`parse`, the trust domain must be a SPIFFE trust domain and the
    namespace and service account valid Kubernetes names, so no port, query, fragment,
    trailing slash or upper case: a lenient parser would let two different strings
    name the same identity, and the CA and ztunnel compare identities as strings.
    """
    try:
        identity = Identity.parse(uri)
    except IdentityError:
        identity = None
    if identity is None or not identity.is_kubernetes_named:
        raise IdentityError(f"not a workload SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>): {uri!r}")
    return identity


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The canonical identity URI of a service account, checked as :func:`parse_spiffe_id`."""
    identity = Identity(trust_domain, namespace, service_account)
    if not identity.is_kubernetes_named:
        raise IdentityError(f"not a workload SPIFFE ID: {identity.uri!r}")
    return identity.uri


def check_trust_domain(trust_domain: str) -> str:
    """Return ``trust_domain`` if it is a valid SPIFFE trust domain, else raise IdentityError."""
    if not isinstance(trust_domain, str) or not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise IdentityError(f"not a SPIFFE trust domain: {trust_domain!r}")
    return trust_domain


def uri_sans(certificate: bytes | x509.Certificate) -> list[str]:
    """All URI SANs of a certificate (DER bytes or a parsed certificate)."""
    cert = (
        certificate
        if isinstance(certificate, x509.Certificate)
        else x509.load_der_x509_certificate(certificate)
    )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def certificate_identity(certificate: bytes | x509.Certificate) -> Identity:
    """The single SPIFFE identity a certificate carries.

    Exactly one ``spiffe://`` URI SAN is required: with none the peer is anonymous,
    and with several it would be ambiguous which one policies should see.  Other URI
    schemes are ignored because they say nothing about the workload.
    """
    spiffe = [uri for uri in uri_sans(certificate) if uri.startswith(SPIFFE_PREFIX)]
    if len(spiffe) != 1:
        raise IdentityError(f"expected exactly one SPIFFE URI SAN, found {len(spiffe)}")
    return Identity.parse(spiffe[0])


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> Identity:
    """The identity of the peer of a completed TLS handshake.

    The dict form of ``getpeercert()`` is empty whenever the chain was not verified
    and flattens the SAN extension, so the DER form is parsed with ``cryptography``,
    which reads the same bytes the peer signed.
    """
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise IdentityError("the peer presented no certificate")
    return certificate_identity(der)


__all__ = [
    "SPIFFE_PREFIX",
    "Identity",
    "IdentityError",
    "SpiffeId",
    "as_identity",
    "certificate_identity",
    "check_trust_domain",
    "parse",
    "parse_spiffe_id",
    "peer_identity",
    "spiffe_id",
    "uri_sans",
]
