"""Obtaining and renewing workload certificates: ztunnel's side of the CA protocol.

ztunnel holds a certificate for every workload identity on its node.  For each one it
generates a key pair locally (the private key never leaves the node), sends the CA a
CSR naming the identity, and authenticates with its own service-account token; the
CA allows this because ztunnel runs as a trusted node account (see ``server.py``).

What the client must not take on trust:

- the CA endpoint itself: TLS to the CA is verified against the mesh root only;
- the answer: the leaf must carry exactly the requested URI SAN and the key we
  generated, and its chain must verify to the mesh root.  A CA that answered with the
  wrong identity would otherwise make ztunnel present it to peers.

Certificates are short-lived (24 h by default), so each is renewed in the background at
half of its remaining lifetime, measured from when it arrived rather than from its
``notBefore`` (which the CA back-dates for clock skew).  A failed renewal is retried
with capped exponential backoff while the current certificate stays in use; listeners
are told whenever a certificate is replaced, so that TLS contexts built from the old
one can be rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ..identity import parse_spiffe_id
from ..kube import file_token
from ..pem import load_cert_chain_pem
from .server import CERTIFICATE_PATH
from .tls import client_context

log = logging.getLogger(__name__)

TokenSource = Callable[[], str]
RotationListener = Callable[["CertBundle"], object]

__all__ = [
    "CertBundle",
    "CertificateError",
    "CertificateManager",
    "CertificateRequestError",
    "RotationListener",
    "file_token",
    "verify_workload_chain",
]


class CertificateError(Exception):
    """A certificate could not be obtained, or the CA's answer cannot be trusted."""


class CertificateRequestError(CertificateError):
    """The CA refused the request; ``status`` is its HTTP status (0 if unreachable)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"CA answered {status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class CertBundle:
    """A workload's certificate, ready to configure TLS with.

    ``chain_pem`` is the leaf followed by any intermediates: what a TLS peer presents.
    The root is kept apart in ``root_pem`` because it is what peers are verified against
    and is not sent on the wire.
    """

    chain_pem: bytes
    key_pem: bytes
    root_pem: bytes
    not_after: datetime
    identity: str

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem)

    def load_into(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` present this certificate (``load_cert_chain`` from memory)."""
        load_cert_chain_pem(ctx, self.chain_pem, self.key_pem)


def verify_workload_chain(
    chain: list[x509.Certificate],
    roots: list[x509.Certificate],
    identity: str,
    *,
    at: datetime | None = None,
) -> None:
    """Raise ``CertificateError`` unless ``chain`` is a valid workload chain for ``identity``.

    The leaf must name exactly ``identity`` (one URI SAN) and verify, through the rest
    of ``chain``, to one of ``roots`` under the RFC 5280 profile of ``cryptography``'s
    verifier, including the clientAuth extended key usage that mutual TLS needs.
    """
    if not chain:
        raise CertificateError("empty certificate chain")
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise CertificateError("the leaf certificate has no subject alternative name") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if uris != [identity]:
        raise CertificateError(f"the certificate names {uris}, not {identity}")
    builder = PolicyBuilder().store(Store(roots))
    if at is not None:
        builder = builder.time(at)
    try:
        builder.build_client_verifier().verify(leaf, chain[1:])
    except VerificationError as exc:
        raise CertificateError(f"the certificate chain does not verify: {exc}") from exc


class CertificateManager:
    """Obtains, caches and renews certificates for workload identities.

    ``ca_url`` is the CA's base URL (``https://istiod.istio-system.svc:15012``);
    ``token_source`` returns the current service-account token and is called for every
    request, since projected tokens rotate (``file_token(path)`` re-reads a file);
    ``root_pem`` is the mesh root (one or more PEM certificates), trusted both for the
    CA's TLS endpoint and for the issued chains.  ``server_name`` overrides the TLS name
    checked when ``ca_url`` names an address rather than the CA's DNS name.
    """

    def __init__(
        self,
        ca_url: str,
        token_source: TokenSource,
        root_pem: bytes,
        *,
        server_name: str | None = None,
        validity_seconds: int | None = None,
        request_timeout: float = 10.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        min_refresh_delay: float = 0.1,
    ) -> None:
        self._url = ca_url.rstrip("/") + CERTIFICATE_PATH
        self._token_source = token_source
        self._root_pem = root_pem
        self._roots = x509.load_pem_x509_certificates(root_pem)
        self._root_ders = {c.public_bytes(serialization.Encoding.DER) for c in self._roots}
        self._ssl = client_context(root_pem)
        self._server_name = server_name
        self._validity = validity_seconds
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._min_refresh_delay = min_refresh_delay
        self._session: aiohttp.ClientSession | None = None
        self._bundles: dict[str, CertBundle] = {}
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[RotationListener] = []
        self._closed = False

    # -- public API -------------------------------------------------------------------

    async def get(self, identity: str) -> CertBundle:
        """A valid certificate for ``identity``, from the cache or fetched now.

        The first call for an identity fetches (and raises ``CertificateError`` on
        failure); from then on it is kept fresh in the background until ``forget``.
        Concurrent first calls share one request.
        """
        parse_spiffe_id(identity)
        if self._closed:
            raise RuntimeError("CertificateManager is closed")
        lock = self._locks.setdefault(identity, asyncio.Lock())
        async with lock:
            bundle = self._bundles.get(identity)
            if bundle is not None and bundle.not_after > datetime.now(UTC):
                return bundle
            bundle = await self._fetch(identity)
            if self._closed:
                raise RuntimeError("CertificateManager closed while fetching")
            if self._locks.get(identity) is lock:  # not forgotten meanwhile
                self._install(identity, bundle)
            return bundle

    def cached(self, identity: str) -> CertBundle | None:
        """The current bundle for ``identity`` without fetching, if one is held."""
        return self._bundles.get(identity)

    def forget(self, identity: str) -> None:
        """Stop renewing ``identity`` and drop its certificate (its last pod left the node)."""
        timer = self._timers.pop(identity, None)
        if timer is not None:
            timer.cancel()
        self._bundles.pop(identity, None)
        self._locks.pop(identity, None)

    def add_listener(self, callback: RotationListener) -> Callable[[], None]:
        """Call ``callback(new_bundle)`` whenever a held certificate is replaced.

        It runs in the event loop and must not block; schedule a task for slow work.
        Returns a function that removes the listener.
        """
        self._listeners.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    async def close(self) -> None:
        """Stop all renewals and release the HTTP session."""
        self._closed = True
        timers = list(self._timers.values())
        self._timers.clear()
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- renewal ----------------------------------------------------------------------

    def _install(self, identity: str, bundle: CertBundle) -> None:
        """Make ``bundle`` current, schedule its renewal and tell listeners if it replaced one."""
        previous = self._bundles.get(identity)
        self._bundles[identity] = bundle
        timer = self._timers.pop(identity, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        remaining = (bundle.not_after - datetime.now(UTC)).total_seconds()
        delay = max(remaining / 2, self._min_refresh_delay)
        self._timers[identity] = asyncio.create_task(
            self._renew_after(identity, delay), name=f"cert-renew {identity}"
        )
        if previous is not None:
            log.info("rotated certificate for %s (valid until %s)", identity, bundle.not_after)
            for listener in list(self._listeners):
                try:
                    listener(bundle)
                except Exception:
                    log.exception("certificate rotation listener failed")

    async def _renew_after(self, identity: str, delay: float) -> None:
        await asyncio.sleep(delay)
        backoff = self._retry_initial
        while True:
            try:
                bundle = await self._fetch(identity)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                current = self._bundles.get(identity)
                expired = current is None or current.not_after <= datetime.now(UTC)
                log.log(
                    logging.ERROR if expired else logging.WARNING,
                    "renewing the certificate for %s failed (%s); retrying in %.1fs; "
                    "the current one %s",
                    identity,
                    exc,
                    backoff,
                    "has expired" if expired else "is still valid",
                )
            # Jitter keeps a node's renewals from retrying in lockstep after a CA outage.
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self._retry_max)
        # Still wanted (not forgotten, not closed)? Then this task is still the timer.
        if self._timers.get(identity) is asyncio.current_task():
            self._install(identity, bundle)

    # -- one request --------------------------------------------------------------------

    async def _fetch(self, identity: str) -> CertBundle:
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        body: dict[str, object] = {
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "identity": identity,
        }
        if self._validity is not None:
            body["validity_seconds"] = self._validity
        try:
            token = self._token_source()
        except OSError as exc:
            raise CertificateRequestError(0, "no_token", f"cannot read the token: {exc}") from exc
        pems = await self._post(body, token)
        chain = self._parse_chain(pems)
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        leaf_der = (
            chain[0]
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        if leaf_der != public_der:
            raise CertificateError("the CA certified a key other than the one we sent")
        verify_workload_chain(chain, self._roots, identity)
        # Keep the leaf and intermediates; roots travel separately (see CertBundle).
        presented = [
            c
            for c in chain[1:]
            if c.public_bytes(serialization.Encoding.DER) not in self._root_ders
        ]
        return CertBundle(
            chain_pem=b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in [chain[0], *presented]
            ),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            root_pem=self._root_pem,
            not_after=chain[0].not_valid_after_utc,
            identity=identity,
        )

    async def _post(self, body: dict[str, object], token: str) -> list[str]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(
                self._url,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                ssl=self._ssl,
                server_hostname=self._server_name,
            ) as resp:
                try:
                    doc = await resp.json(content_type=None)
                except ValueError:
                    doc = None
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CertificateRequestError(0, "unreachable", f"CA unreachable: {exc!r}") from exc
        if status != 200:
            doc = doc if isinstance(doc, dict) else {}
            raise CertificateRequestError(
                status, str(doc.get("error", "error")), str(doc.get("message", "no message"))
            )
        pems = doc.get("certChain") if isinstance(doc, dict) else None
        if not isinstance(pems, list) or not pems or not all(isinstance(p, str) for p in pems):
            raise CertificateError("the CA's answer has no certChain list of PEM strings")
        return pems

    @staticmethod
    def _parse_chain(pems: list[str]) -> list[x509.Certificate]:
        try:
            return [x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems]
        except (ValueError, UnicodeEncodeError) as exc:
            raise CertificateError(f"the CA returned an unreadable certificate: {exc}") from exc
