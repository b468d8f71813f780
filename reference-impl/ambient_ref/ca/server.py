"""The CA's HTTPS service: who may obtain a certificate for which identity.

Istio serves this as the gRPC method
``istio.v1.auth.IstioCertificateService/CreateCertificate`` on istiod's port 15012.
This reference implementation keeps the semantics and uses JSON over HTTPS instead,
which any HTTP client can speak and a reader can follow with ``curl``.

Wire protocol
=============

Request::

    POST /v1/certificate HTTP/1.1
    Authorization: Bearer <Kubernetes service-account token (JWT)>
    Content-Type: application/json

    {"csr": "-----BEGIN CERTIFICATE REQUEST-----\\n...",
     "validity_seconds": 86400,
     "identity": "spiffe://cluster.local/ns/default/sa/app"}

- ``csr`` (required): a PEM PKCS#10 request whose only name is a URI SAN equal to the
  identity.  Istio: ``IstioCertificateRequest.csr``.
- ``validity_seconds`` (optional): the wanted lifetime.  Absent, null, zero or negative
  means the server's default (24 h, Istio's ``SECRET_TTL``); more than the server's
  maximum is clamped to it.  Istio: ``validity_duration``.
- ``identity`` (optional): the SPIFFE ID to certify.  Absent means the caller's own
  identity; naming another one is impersonation, which only node agents may do.
  Istio: ``metadata.ImpersonatedIdentity``.

Responses (always JSON):

- ``200 {"certChain": ["<leaf PEM>", "<intermediate PEM>", ..., "<root PEM>"]}``: the
  leaf first, then the chain up to and including the root (Istio: ``cert_chain``).
- ``400`` malformed body, identity or CSR; ``401`` no or invalid bearer token;
  ``403`` the caller may not obtain that identity; ``503`` the Kubernetes API needed to
  decide could not be reached.  Errors are ``{"error": "<code>", "message": "<why>"}``.

Authorization
=============

The bearer token is a Kubernetes service-account token, checked by an injected
``authenticate`` callable (in production a TokenReview, which also reports the node of
the pod the token is bound to).  The caller's own identity is
``spiffe://<trust domain>/ns/<its namespace>/sa/<its service account>``.

- Any authenticated caller may obtain a certificate for its own identity.
- A caller whose ``namespace/serviceaccount`` is one of ``trusted_node_accounts``
  (``istio-system/ztunnel``: the node proxy, which holds certificates on behalf of the
  pods of its node) may obtain one for another identity, but only if a pod running
  as that service account is scheduled on the caller's own node.  A compromised
  ztunnel can therefore impersonate only the workloads it already carries.
- Everything else is refused with 403, saying which rule failed.  (Istio answers
  ``Unauthenticated`` here; a distinct 403 tells the client that retrying with the same
  token cannot help.)
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..identity import Identity, IdentityError, parse_spiffe_id
from ..kube import KubeClient, KubeError, TokenSource, resource_path
from .authority import CertificateAuthority, CSRRejected
from .tls import server_context

log = logging.getLogger(__name__)

CERTIFICATE_PATH = "/v1/certificate"
DEFAULT_TTL = 24 * 3600  # Istio's SECRET_TTL default
MAX_TTL = 90 * 24 * 3600  # Istio's MAX_WORKLOAD_CERT_TTL default
SERVING_TTL = 365 * 24 * 3600
ISTIOD_DNS_NAMES = ("istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local")

API_TIMEOUT = 10.0  # seconds: a CA request waits on the API server, and its caller on us
SA_USER_PREFIX = "system:serviceaccount:"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"


@dataclass(frozen=True)
class Caller:
    """Who presented the bearer token: a service account, and where its pod runs."""

    namespace: str
    service_account: str
    node_name: str | None = None  # set when the token is bound to a scheduled pod
    pod_name: str | None = None

    @property
    def account(self) -> str:
        """``namespace/serviceaccount``, the form ``trusted_node_accounts`` uses."""
        return f"{self.namespace}/{self.service_account}"


Authenticator = Callable[[str], Awaitable[Caller | None]]
PodsOnNode = Callable[[str], Awaitable[set[tuple[str, str]]]]


class _Refused(Exception):
    """An answer other than 200, carried to the handler's single exit point."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def ca_app(
    authority: CertificateAuthority,
    authenticate: Authenticator,
    pods_on_node: PodsOnNode,
    trusted_node_accounts: set[str],
    default_ttl: int = DEFAULT_TTL,
    max_ttl: int = MAX_TTL,
) -> web.Application:
    """The aiohttp application serving ``POST /v1/certificate`` (see the module docstring).

    ``authenticate`` and ``pods_on_node`` are injected so the authorization rules can be
    tested without a Kubernetes API; ``token_review_authenticator`` and
    ``kube_pods_on_node`` are the production implementations.
    """
    if not 0 < default_ttl <= max_ttl:
        raise ValueError(f"need 0 < default_ttl ({default_ttl}) <= max_ttl ({max_ttl})")
    for account in trusted_node_accounts:
        ns, _, sa = account.partition("/")
        if not ns or not sa or "/" in sa:
            raise ValueError(f"trusted node account {account!r} is not 'namespace/sa'")
    trusted = frozenset(trusted_node_accounts)

    async def create_certificate(request: web.Request) -> web.Response:
        try:
            caller = await _authenticate(request, authenticate)
            csr, identity, wanted_ttl = await _parse_body(request, caller, authority.trust_domain)
            await _authorize(caller, identity, trusted, pods_on_node)
            ttl = _effective_ttl(wanted_ttl, default_ttl, max_ttl)
            try:
                chain = authority.sign(csr.encode("utf-8"), str(identity), ttl)
            except CSRRejected as exc:
                raise _Refused(400, "bad_csr", exc.reason) from exc
        except _Refused as refusal:
            log.info("CA refused %s: %s", request.remote, refusal.message)
            return _error(refusal.status, refusal.code, refusal.message)
        log.info("CA issued %s to %s (ttl %ds)", identity, caller.account, ttl)
        return web.json_response({"certChain": [pem.decode("ascii") for pem in chain]})

    app = web.Application()
    app.router.add_post(CERTIFICATE_PATH, create_certificate)
    return app


async def _authenticate(request: web.Request, authenticate: Authenticator) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _Refused(401, "unauthenticated", "missing 'Authorization: Bearer <token>' header")
    try:
        caller = await authenticate(token)
    except Exception as exc:
        # Not the caller's fault: say so, so that it retries rather than gives up.
        log.warning("authenticating a CA request failed: %r", exc)
        raise _Refused(503, "unavailable", f"cannot authenticate the token now: {exc}") from exc
    if caller is None:
        raise _Refused(
            401, "unauthenticated", "the bearer token is not a valid service-account token"
        )
    return caller


async def _parse_body(
    request: web.Request, caller: Caller, trust_domain: str
) -> tuple[str, Identity, int | None]:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(400, "bad_request", "the body is not JSON") from exc
    if not isinstance(body, dict):
        raise _Refused(400, "bad_request", "the body must be a JSON object")
    csr = body.get("csr")
    if not isinstance(csr, str) or not csr:
        raise _Refused(400, "bad_request", "'csr' must be a PEM string")
    ttl = body.get("validity_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)):
        raise _Refused(400, "bad_request", "'validity_seconds' must be an integer")
    raw_identity = body.get("identity")
    if raw_identity is None:
        try:
            own = Identity(trust_domain, caller.namespace, caller.service_account)
        except IdentityError as exc:
            raise _Refused(400, "bad_identity", str(exc)) from exc
        return csr, own, ttl
    if not isinstance(raw_identity, str):
        raise _Refused(400, "bad_request", "'identity' must be a SPIFFE ID string")
    try:
        identity = parse_spiffe_id(raw_identity)
    except ValueError as exc:
        raise _Refused(400, "bad_identity", str(exc)) from exc
    # Checked before authorization, which compares only namespace and service account.
    if identity.trust_domain != trust_domain:
        raise _Refused(
            400, "bad_identity", f"{raw_identity} is outside this CA's trust domain {trust_domain}"
        )
    return csr, identity, ttl


async def _authorize(
    caller: Caller, identity: Identity, trusted: frozenset[str], pods_on_node: PodsOnNode
) -> None:
    """Return if ``caller`` may hold ``identity``; raise a 403 saying which rule failed."""
    if identity.account == (caller.namespace, caller.service_account):
        return
    wanted = f"{identity.namespace}/{identity.service_account}"
    if caller.account not in trusted:
        raise _Refused(
            403,
            "forbidden",
            f"{caller.account} may only obtain its own identity; "
            f"impersonating {wanted} needs a trusted node account",
        )
    if not caller.node_name:
        raise _Refused(
            403,
            "forbidden",
            f"{caller.account} is a trusted node account but its "
            "token is not bound to a pod on a node",
        )
    try:
        accounts = await pods_on_node(caller.node_name)
    except Exception as exc:
        log.warning("listing pods on node %s failed: %r", caller.node_name, exc)
        raise _Refused(
            503, "unavailable", f"cannot list pods on node {caller.node_name} now: {exc}"
        ) from exc
    if identity.account not in accounts:
        raise _Refused(
            403,
            "forbidden",
            f"no pod running as {wanted} is on node "
            f"{caller.node_name}, the node of {caller.account}",
        )


def _effective_ttl(wanted: int | None, default_ttl: int, max_ttl: int) -> int:
    if wanted is None or wanted <= 0:
        return default_ttl
    return min(wanted, max_ttl)


# -- serving over HTTPS -----------------------------------------------------------------


def serving_certificate(
    authority: CertificateAuthority,
    dns_names: Iterable[str] = ISTIOD_DNS_NAMES,
    ttl_seconds: int = SERVING_TTL,
) -> tuple[bytes, bytes]:
    """A fresh key and a certificate for the CA's own HTTPS endpoint: ``(chain, key)`` PEM.

    Clients already trust the mesh root (they need it to check their own chain), so the
    CA serves with a certificate it issues itself.  Entries of ``dns_names`` that are IP
    literals become IP SANs, for clients that dial an address rather than a name.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    dns: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for name in dns_names:
        try:
            ips.append(ipaddress.ip_address(name))
        except ValueError:
            dns.append(name)
    chain = authority.issue(
        key.public_key(), dns_names=dns, ip_addresses=ips, ttl_seconds=ttl_seconds
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The root is left out: clients have it, and TLS peers do not need it sent.
    return b"".join(chain[:-1]), key_pem


async def serve_https(
    app: web.Application, host: str, port: int, chain_pem: bytes, key_pem: bytes
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` over TLS; returns the runner (to ``cleanup()``) and the
    bound port, which is the useful part when ``port`` is 0."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=server_context(chain_pem, key_pem))
    await site.start()
    return runner, runner.addresses[0][1]


# -- production callables backed by the Kubernetes API ---------------------------------


def caller_from_token_review(status: dict[str, Any]) -> Caller | None:
    """The caller a TokenReview ``status`` describes, or None if it is not a service account.

    Bound tokens carry the pod's node in ``user.extra`` (Kubernetes 1.30 and later); a
    token without it authenticates but cannot be used to impersonate.
    """
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    username = user.get("username") or ""
    if not username.startswith(SA_USER_PREFIX):
        return None
    namespace, _, service_account = username[len(SA_USER_PREFIX) :].partition(":")
    if not namespace or not service_account:
        return None
    extra = user.get("extra") or {}

    def first(key: str) -> str | None:
        values = extra.get(key) or []
        return values[0] if values else None

    return Caller(namespace, service_account, first(NODE_NAME_EXTRA), first(POD_NAME_EXTRA))


class TokenReviewAuthenticator:
    """``authenticate`` for ``ca_app``: asks the API server who a token belongs to."""

    def __init__(self, api: KubeClient, audiences: list[str] | None = None) -> None:
        self._api = api
        self._audiences = audiences

    async def __call__(self, token: str) -> Caller | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        review = await self._api.create(
            resource_path("authentication.k8s.io/v1", "tokenreviews"),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        )
        return caller_from_token_review(review.get("status") or {})

    async def close(self) -> None:
        await self._api.close()


def token_review_authenticator(
    api_server_url: str,
    api_token: TokenSource,
    api_ca_pem: bytes | None,
    *,
    audiences: list[str] | None = None,
) -> TokenReviewAuthenticator:
    """A TokenReview-backed authenticator (``POST /apis/authentication.k8s.io/v1/tokenreviews``).

    ``api_token`` is the CA's own credential (a string, or a callable re-read per request);
    ``audiences``, if given, are required of the reviewed token (Istio uses ``istio-ca``).
    """
    api = KubeClient(api_server_url, api_token, api_ca_pem, timeout=API_TIMEOUT)
    return TokenReviewAuthenticator(api, audiences)


class KubePodsOnNode:
    """``pods_on_node`` for ``ca_app``: the (namespace, service account) pairs on a node.

    It lists pods on each impersonation request instead of keeping a watch-fed cache as
    istiod does: simpler to read, and impersonation happens once per workload per
    certificate lifetime, not per connection.
    """

    def __init__(self, api: KubeClient) -> None:
        self._api = api

    async def __call__(self, node: str) -> set[tuple[str, str]]:
        pods = await self._api.list(
            resource_path("v1", "pods"), field_selector=f"spec.nodeName={node}"
        )
        accounts: set[tuple[str, str]] = set()
        for pod in pods["items"]:
            # A finished pod runs nothing, so it no longer vouches for its account.
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            namespace = (pod.get("metadata") or {}).get("namespace")
            sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
            if namespace:
                accounts.add((namespace, sa))
        return accounts

    async def close(self) -> None:
        await self._api.close()


def kube_pods_on_node(
    api_server_url: str, api_token: TokenSource, api_ca_pem: bytes | None
) -> KubePodsOnNode:
    """Pods on a node via ``GET /api/v1/pods?fieldSelector=spec.nodeName=<node>``."""
    return KubePodsOnNode(KubeClient(api_server_url, api_token, api_ca_pem, timeout=API_TIMEOUT))


__all__ = [
    "CERTIFICATE_PATH",
    "DEFAULT_TTL",
    "MAX_TTL",
    "Authenticator",
    "Caller",
    "KubeError",
    "KubePodsOnNode",
    "PodsOnNode",
    "TokenReviewAuthenticator",
    "ca_app",
    "caller_from_token_review",
    "kube_pods_on_node",
    "serve_https",
    "serving_certificate",
    "token_review_authenticator",
]
