"""The certificate authority proper: a signing key and the rules for what it signs.

Istio's CA (istiod's Citadel) issues each workload a short-lived X.509 certificate
whose only name is the workload's SPIFFE ID as a URI subject alternative name.  Peers
authenticate each other with these certificates (mutual TLS inside HBONE), so a
certificate is exactly as trustworthy as the CA's refusal to put the wrong name in one.

This module decides *what* goes into a certificate; *who* may ask for which identity
is the server's job (``server.py``), which calls ``sign`` only after authorizing the
caller.  The rules enforced here hold whoever the caller is:

- the CSR must be well formed and its self-signature must verify, which proves the
  requester holds the private key being certified;
- the CSR must ask for exactly one name, a URI SAN equal to the identity being issued,
  and that identity must be a workload SPIFFE ID in this CA's trust domain;
- the certificate is a leaf (``CA:FALSE``) usable for both TLS server and client
  authentication, since every workload certificate is used in both directions;
- it is back-dated a little to tolerate clock skew between nodes, and never outlives
  the CA certificate that signs it.

The root key is EC P-256: signatures are fast and small, and it is what Istio's
workload keys use too.  ``from_pem`` also accepts RSA keys and an intermediate CA
followed by its chain, as a "plugged-in" CA would have.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..identity import check_trust_domain, parse_spiffe_id

DEFAULT_TRUST_DOMAIN = "cluster.local"
# Certificates start this far in the past, so a node whose clock runs slightly behind
# the CA's does not reject a certificate that was issued "in its future".
CLOCK_SKEW = timedelta(minutes=1)

CAPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_MIN_RSA_BITS = 2048


class CSRRejected(ValueError):
    """The CSR cannot be signed; ``reason`` says why, in words fit for the requester."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class CertificateAuthority:
    """A signing certificate and key, the chain from it to the root, and a trust domain.

    Build one with ``create`` (a fresh self-signed root) or ``from_pem`` (a stored one).
    """

    def __init__(
        self,
        chain: list[x509.Certificate],
        key: CAPrivateKey,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> None:
        """``chain`` is the signing certificate first, then its issuers up to the root."""
        _check_ca_chain(chain, key)
        check_trust_domain(trust_domain)
        self._chain = chain
        self._key = key
        self._trust_domain = trust_domain

    # -- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls, trust_domain: str = DEFAULT_TRUST_DOMAIN, days: int = 3650
    ) -> CertificateAuthority:
        """A new self-signed EC P-256 root, named ``O=<trust domain>`` as Istio names its own."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
        now = datetime.now(UTC).replace(microsecond=0)
        root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls([root], key, trust_domain)

    @classmethod
    def from_pem(
        cls, cert_pem: bytes, key_pem: bytes, *, trust_domain: str = DEFAULT_TRUST_DOMAIN
    ) -> CertificateAuthority:
        """Load a CA certificate (optionally followed by its chain to the root) and its key.

        The trust domain is configuration, not read from the certificate: a root's
        subject is free text, and guessing the trust domain from it could silently
        change which identities this CA is willing to sign.
        """
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            raise ValueError(f"CA certificate is not valid PEM: {exc}") from exc
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError(f"unsupported CA key type {type(key).__name__}; use EC or RSA")
        return cls(chain, key, trust_domain)

    # -- what it is ---------------------------------------------------------------------

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._chain[-1]

    @property
    def root_pem(self) -> bytes:
        """The root certificate that workloads trust (what ``istio-ca-root-cert`` holds)."""
        return _pem(self._chain[-1])

    @property
    def cert_pem(self) -> bytes:
        """The signing certificate followed by its chain: what ``from_pem`` reads back."""
        return b"".join(_pem(c) for c in self._chain)

    @property
    def key_pem(self) -> bytes:
        """The signing key as unencrypted PKCS#8 PEM, for storing in a Kubernetes Secret."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    # -- signing ------------------------------------------------------------------------

    def sign(self, csr_pem: bytes, identity: str, ttl_seconds: int) -> list[bytes]:
        """Sign a workload CSR for ``identity``; returns PEM certificates, leaf first.

        The chain continues up to and including the root, so a verifier holding the
        root can check it without fetching anything.  Raises ``CSRRejected`` when the
        CSR is malformed, its signature is wrong, or it asks for any name other than
        ``identity``; the server turns that into a 400 for the requester.
        """
        try:
            wanted = parse_spiffe_id(identity)
        except ValueError as exc:
            raise CSRRejected(str(exc)) from exc
        if wanted.trust_domain != self._trust_domain:
            raise CSRRejected(
                f"identity {identity} is outside this CA's trust domain {self._trust_domain}"
            )
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            raise CSRRejected("malformed CSR: not a PEM PKCS#10 certificate request") from exc
        try:
            signature_ok = csr.is_signature_valid
            public_key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CSRRejected(f"unsupported CSR key or signature: {exc}") from exc
        if not signature_ok:
            raise CSRRejected("CSR signature does not verify with the key it carries")
        _check_workload_key(public_key)

        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound as exc:
            raise CSRRejected(
                f"CSR has no subject alternative name; it must carry the URI SAN {identity}"
            ) from exc
        except ValueError as exc:
            raise CSRRejected(f"malformed CSR extensions: {exc}") from exc
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        others = [n for n in san if not isinstance(n, x509.UniformResourceIdentifier)]
        # Names other than the identity are refused rather than dropped: a requester
        # asking for more than it can get has a bug that silence would only hide.
        if others:
            raise CSRRejected(f"CSR asks for names other than a URI SAN: {others}")
        if uris != [identity]:
            raise CSRRejected(
                f"CSR must carry exactly one URI SAN equal to {identity}; it carries {uris}"
            )
        return self.issue(public_key, uris=[identity], ttl_seconds=ttl_seconds)

    def issue(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        ttl_seconds: int,
        uris: Iterable[str] = (),
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[IPAddress] = (),
    ) -> list[bytes]:
        """Issue a leaf certificate for ``public_key`` with exactly the given names.

        This is the CA's own act, with no policy check: ``sign`` calls it for workloads
        once the CSR passed, and the control plane for its serving certificate.  Never
        expose it to requesters directly.
        """
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds}")
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        names += [x509.DNSName(d) for d in dns_names]
        names += [x509.IPAddress(ip) for ip in ip_addresses]
        if not names:
            raise ValueError("a certificate needs at least one subject alternative name")
        issuer = self._chain[0]
        now = datetime.now(UTC).replace(microsecond=0)
        # Never outlive the issuer: a verifier would reject the chain after that anyway.
        not_after = min(now + timedelta(seconds=ttl_seconds), issuer.not_valid_after_utc)
        try:
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            )
        except x509.ExtensionNotFound:
            # The issuer's key is ours (checked at construction), so its public half will do.
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        leaf = (
            x509.CertificateBuilder()
            # The subject is empty: the identity is the SAN, which is then critical (RFC 5280).
            .subject_name(x509.Name([]))
            .issuer_name(issuer.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_encipherment=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=True)
            .add_extension(aki, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return [_pem(leaf)] + [_pem(c) for c in self._chain]


def _check_workload_key(key: CertificatePublicKeyTypes) -> None:
    """Refuse keys too weak (or too exotic) for the TLS stacks that will use them."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _ACCEPTED_CURVES):
            raise CSRRejected(f"unsupported EC curve {key.curve.name}; use P-256")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise CSRRejected(f"RSA key of {key.key_size} bits is too short")
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise CSRRejected(f"unsupported key type {type(key).__name__}; use EC P-256")


def _check_ca_chain(chain: list[x509.Certificate], key: CAPrivateKey) -> None:
    """The chain must start at a CA certificate for ``key`` and end at a self-signed root."""
    if not chain:
        raise ValueError("no CA certificate given")
    if _spki(chain[0].public_key()) != _spki(key.public_key()):
        raise ValueError("the CA key does not match the CA certificate")
    for cert in chain:
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise ValueError(f"certificate {cert.subject.rfc4514_string()!r} is not a CA")
    try:
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
        chain[-1].verify_directly_issued_by(chain[-1])
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ValueError(
            "the CA certificates must each be issued by the next and end at a self-signed root"
        ) from exc
