"""The CA: signing rules, the HTTPS service's authorization, the renewing client, bootstrap.

Everything runs in-process on 127.0.0.1; the Kubernetes API is either an injected fake
callable or a small fake API server, so the tests need no cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ambient_ref.ca.authority import CertificateAuthority, CSRRejected
from ambient_ref.ca.bootstrap import (
    CA_CERT_KEY,
    CA_KEY_KEY,
    CA_SECRET,
    ROOT_CERT_KEY,
    ROOT_CONFIGMAP,
    KubeSecretStore,
    RootOfTrustError,
    load_or_create_root,
)
from ambient_ref.ca.client import (
    CertBundle,
    CertificateError,
    CertificateManager,
    CertificateRequestError,
    verify_workload_chain,
)
from ambient_ref.ca.server import (
    Caller,
    ca_app,
    caller_from_token_review,
    kube_pods_on_node,
    serve_https,
    serving_certificate,
    token_review_authenticator,
)
from ambient_ref.ca.tls import client_context
from ambient_ref.identity import parse_spiffe_id, spiffe_id
from ambient_ref.kube import AlreadyExists, KubeClient, file_token

TD = "cluster.local"
APP = f"spiffe://{TD}/ns/default/sa/app"
DB = f"spiffe://{TD}/ns/prod/sa/db"
OTHER = f"spiffe://{TD}/ns/default/sa/other"
ZTUNNEL_ACCOUNTS = {"istio-system/ztunnel"}

# Bearer tokens the fake authenticator knows, and the pods on each node.
CALLERS = {
    "tok-app": Caller("default", "app", "node-1", "app-1"),
    "tok-zt1": Caller("istio-system", "ztunnel", "node-1", "ztunnel-a"),
    "tok-zt2": Caller("istio-system", "ztunnel", "node-2", "ztunnel-b"),
    "tok-zt-unbound": Caller("istio-system", "ztunnel"),
}
PODS = {
    "node-1": {("default", "app"), ("prod", "db"), ("istio-system", "ztunnel")},
    "node-2": {("default", "other"), ("istio-system", "ztunnel")},
}
WAIT = 15.0  # bound on any single wait in these tests; none should come close


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run an async test body with an upper bound, since pytest-asyncio is not used."""
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(TD)


def make_csr(
    *uris: str, dns: tuple[str, ...] = (), key: Any = None
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=True)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


def load_chain(pems: list[bytes] | list[str]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(p if isinstance(p, bytes) else p.encode()) for p in pems]


# -- SPIFFE IDs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://cluster.local/ns/default/sa/app/",
        "spiffe://cluster.local/ns/default/sa/",
        "spiffe://Cluster.local/ns/default/sa/app",
        "spiffe://cluster.local/ns/default/sa/app?x=1",
        "spiffe://cluster.local:8443/ns/default/sa/app",
        "https://cluster.local/ns/default/sa/app",
        "spiffe://cluster.local/sa/app/ns/default",
        "spiffe://cluster.local/ns/-bad/sa/app",
    ],
)
def test_spiffe_ids_are_parsed_strictly(uri: str) -> None:
    with pytest.raises(ValueError):
        parse_spiffe_id(uri)


def test_spiffe_id_round_trip() -> None:
    sid = parse_spiffe_id("spiffe://example.org/ns/prod/sa/db.reader")
    assert (sid.trust_domain, sid.account) == ("example.org", ("prod", "db.reader"))
    assert str(sid) == spiffe_id("example.org", "prod", "db.reader")


# -- signing rules ---------------------------------------------------------------------


def test_sign_issues_a_workload_leaf(ca: CertificateAuthority) -> None:
    csr, key = make_csr(APP)
    before = datetime.now(UTC).replace(microsecond=0)
    pems = ca.sign(csr, APP, 3600)
    chain = load_chain(pems)

    assert len(chain) == 2 and pems[-1] == ca.root_pem
    leaf = chain[0]
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [APP]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # TTL honoured, and back-dated a little for clock skew.
    assert (
        timedelta(0)
        <= leaf.not_valid_after_utc - (before + timedelta(hours=1))
        <= timedelta(seconds=5)
    )
    assert leaf.not_valid_before_utc < before
    assert leaf.public_key() == key.public_key()
    verify_workload_chain(chain, [ca.root_certificate], APP)
    # Random serials: two certificates for the same CSR still differ.
    assert load_chain(ca.sign(csr, APP, 3600))[0].serial_number != leaf.serial_number


def test_leaf_never_outlives_its_ca() -> None:
    short = CertificateAuthority.create(TD, days=1)
    csr, _ = make_csr(APP)
    leaf = load_chain(short.sign(csr, APP, 30 * 24 * 3600))[0]
    assert leaf.not_valid_after_utc == short.root_certificate.not_valid_after_utc


@pytest.mark.parametrize(
    ("csr_names", "dns", "reason"),
    [
        ((OTHER,), (), "exactly one URI SAN"),
        ((APP, OTHER), (), "exactly one URI SAN"),
        ((), (), "no subject alternative name"),
        ((APP,), ("app.default.svc",), "names other than a URI SAN"),
    ],
)
def test_sign_requires_exactly_the_identity(
    ca: CertificateAuthority, csr_names: tuple[str, ...], dns: tuple[str, ...], reason: str
) -> None:
    csr, _ = make_csr(*csr_names, dns=dns)
    with pytest.raises(CSRRejected, match=reason):
        ca.sign(csr, APP, 3600)


def test_sign_rejects_another_trust_domain(ca: CertificateAuthority) -> None:
    foreign = "spiffe://evil.example/ns/default/sa/app"
    csr, _ = make_csr(foreign)
    with pytest.raises(CSRRejected, match="outside this CA's trust domain"):
        ca.sign(csr, foreign, 3600)


def test_sign_rejects_a_tampered_csr(ca: CertificateAuthority) -> None:
    # Sign a CSR for sa/app, then edit the name to sa/apq: the signature no longer fits.
    csr, _ = make_csr(APP)
    der = x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER)
    assert der.count(b"/sa/app") == 1
    forged = x509.load_der_x509_csr(der.replace(b"/sa/app", b"/sa/apq"))
    pem = forged.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CSRRejected, match="signature does not verify"):
        ca.sign(pem, APP.replace("/sa/app", "/sa/apq"), 3600)


def test_sign_rejects_garbage_and_weak_keys(ca: CertificateAuthority) -> None:
    with pytest.raises(CSRRejected, match="malformed CSR"):
        ca.sign(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            APP,
            3600,
        )
    with pytest.raises(CSRRejected, match="not a workload SPIFFE ID"):
        ca.sign(make_csr(APP)[0], "spiffe://cluster.local/app", 3600)
    weak, _ = make_csr(APP, key=rsa.generate_private_key(65537, 1024))
    with pytest.raises(CSRRejected, match="too short"):
        ca.sign(weak, APP, 3600)


def test_from_pem_round_trip_and_checks(ca: CertificateAuthority) -> None:
    again = CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem)
    assert again.root_pem == ca.root_pem and again.trust_domain == TD
    chain = load_chain(again.sign(make_csr(APP)[0], APP, 60))
    verify_workload_chain(chain, [ca.root_certificate], APP)

    other = CertificateAuthority.create(TD)
    with pytest.raises(ValueError, match="does not match"):
        CertificateAuthority.from_pem(ca.cert_pem, other.key_pem)
    with pytest.raises(ValueError, match="trust domain"):
        CertificateAuthority.from_pem(ca.cert_pem, ca.key_pem, trust_domain="Not Valid")


def test_intermediate_ca_chain_verifies(ca: CertificateAuthority) -> None:
    """A plugged-in intermediate signs; its chain (intermediate, root) is returned."""
    key = ec.generate_private_key(ec.SECP256R1())
    root = ca.root_certificate
    now = datetime.now(UTC)
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "intermediate")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), False
        )
    )
    # Sign the intermediate with the root's key, which the authority keeps private.
    root_key = serialization.load_pem_private_key(ca.key_pem, None)
    inter_cert = inter.sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sub = CertificateAuthority.from_pem(
        inter_cert.public_bytes(serialization.Encoding.PEM) + ca.root_pem, key_pem
    )
    assert sub.root_pem == ca.root_pem
    pems = sub.sign(make_csr(APP)[0], APP, 60)
    assert len(pems) == 3
    verify_workload_chain(load_chain(pems), [root], APP)
    with pytest.raises(CertificateError, match="does not verify"):
        verify_workload_chain(load_chain(pems)[:1], [root], APP)  # intermediate missing


# -- the HTTPS service -----------------------------------------------------------------


class FakeAuth:
    """``authenticate`` from a fixed table of tokens; counts calls, can be made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail_next = 0

    async def __call__(self, token: str) -> Caller | None:
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("API server unreachable")
        return CALLERS.get(token)


async def fake_pods_on_node(node: str) -> set[tuple[str, str]]:
    return PODS.get(node, set())


@contextlib.asynccontextmanager
async def running(app: web.Application, ca: CertificateAuthority) -> AsyncIterator[str]:
    chain, key = serving_certificate(ca, ["127.0.0.1"])
    runner, port = await serve_https(app, "127.0.0.1", 0, chain, key)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def make_app(ca: CertificateAuthority, auth: Any = None, **kwargs: Any) -> web.Application:
    return ca_app(ca, auth or FakeAuth(), fake_pods_on_node, ZTUNNEL_ACCOUNTS, **kwargs)


async def post(url: str, root_pem: bytes, body: Any, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/v1/certificate", json=body, headers=headers, ssl=client_context(root_pem)
        ) as resp,
    ):
        return resp.status, await resp.json()


CASES = [
    # (name, token, requested identity, CSR SAN, status, message fragment)
    ("own identity, implicit", "tok-app", None, APP, 200, ""),
    ("own identity, explicit", "tok-app", APP, APP, 200, ""),
    ("ztunnel for a pod on its node", "tok-zt1", DB, DB, 200, ""),
    ("ztunnel for a pod on another node", "tok-zt2", DB, DB, 403, "no pod running as prod/db"),
    ("ztunnel token without a node", "tok-zt-unbound", DB, DB, 403, "not bound to a pod"),
    ("workload impersonating", "tok-app", DB, DB, 403, "may only obtain its own identity"),
    ("no token", None, APP, APP, 401, "Bearer"),
    ("unknown token", "tok-nobody", APP, APP, 401, "not a valid"),
    ("CSR for another name", "tok-app", APP, OTHER, 400, "exactly one URI SAN"),
    ("malformed identity", "tok-app", "spiffe://cluster.local/app", APP, 400, "SPIFFE"),
    ("foreign trust domain", "tok-zt1", "spiffe://x.org/ns/prod/sa/db", DB, 400, "trust domain"),
]


@pytest.mark.parametrize(
    ("token", "identity", "csr_name", "status", "fragment"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_server_authorization(
    ca: CertificateAuthority,
    token: str | None,
    identity: str | None,
    csr_name: str,
    status: int,
    fragment: str,
) -> None:
    async def body() -> None:
        async with running(make_app(ca), ca) as url:
            csr, key = make_csr(csr_name)
            req: dict[str, Any] = {"csr": csr.decode()}
            if identity is not None:
                req["identity"] = identity
            got, doc = await post(url, ca.root_pem, req, token)
        assert got == status, doc
        if status != 200:
            assert fragment in doc["message"] and doc["error"]
            return
        chain = load_chain(doc["certChain"])
        verify_workload_chain(chain, [ca.root_certificate], csr_name)
        assert chain[0].public_key() == key.public_key()

    run(body())


def test_server_bad_requests_and_ttl(ca: CertificateAuthority) -> None:
    auth = FakeAuth()

    async def body() -> None:
        app = make_app(ca, auth, default_ttl=600, max_ttl=3600)
        async with running(app, ca) as url:
            csr = make_csr(APP)[0].decode()
            for bad in ("not json", [], {"csr": 5}, {"csr": csr, "validity_seconds": "1h"}):
                status, doc = await post(url, ca.root_pem, bad, "tok-app")
                assert status == 400 and doc["error"] == "bad_request", bad
            status, doc = await post(url, ca.root_pem, {"csr": "garbage"}, "tok-app")
            assert status == 400 and doc["error"] == "bad_csr"

            for asked, lifetime in ((None, 600), (0, 600), (120, 120), (10**9, 3600)):
                req = {"csr": csr} if asked is None else {"csr": csr, "validity_seconds": asked}
                status, doc = await post(url, ca.root_pem, req, "tok-app")
                assert status == 200
                leaf = load_chain(doc["certChain"])[0]
                left = (leaf.not_valid_after_utc - datetime.now(UTC)).total_seconds()
                assert lifetime - 5 <= left <= lifetime, (asked, left)

            auth.fail_next = 1
            status, doc = await post(url, ca.root_pem, {"csr": csr}, "tok-app")
            assert status == 503 and doc["error"] == "unavailable"

    run(body())


def test_ca_app_validates_its_configuration(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="default_ttl"):
        ca_app(ca, FakeAuth(), fake_pods_on_node, set(), default_ttl=10, max_ttl=5)
    with pytest.raises(ValueError, match="namespace/sa"):
        ca_app(ca, FakeAuth(), fake_pods_on_node, {"ztunnel"})


# -- the client ------------------------------------------------------------------------


def check_bundle(bundle: CertBundle, ca: CertificateAuthority, identity: str) -> None:
    chain = x509.load_pem_x509_certificates(bundle.chain_pem)
    assert len(chain) == 1  # the root is not part of the presented chain
    verify_workload_chain(chain, [ca.root_certificate], identity)
    key = serialization.load_pem_private_key(bundle.key_pem, None)
    assert chain[0].public_key() == key.public_key()
    assert bundle.root_pem == ca.root_pem and bundle.identity == identity
    assert bundle.not_after == chain[0].not_valid_after_utc > datetime.now(UTC)
    # It is usable as a TLS credential as is.
    bundle.load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))


def test_client_gets_checks_and_caches(ca: CertificateAuthority) -> None:
    auth = FakeAuth()

    async def body() -> None:
        async with running(make_app(ca, auth), ca) as url:
            mgr = CertificateManager(url, lambda: "tok-zt1", ca.root_pem)
            try:
                first, second = await asyncio.gather(mgr.get(DB), mgr.get(DB))
                assert first is second and auth.calls == 1  # concurrent gets share a request
                check_bundle(first, ca, DB)
                assert await mgr.get(DB) is first and auth.calls == 1  # cached
                assert mgr.cached(DB) is first

                with pytest.raises(CertificateRequestError) as refused:
                    await mgr.get(OTHER)  # on node-2, not ztunnel-a's node
                assert refused.value.status == 403 and "node-1" in refused.value.message

                mgr.forget(DB)
                assert mgr.cached(DB) is None
                assert (await mgr.get(DB)) is not first and auth.calls == 3
            finally:
                await mgr.close()

    run(body())


def test_client_renews_at_half_life(ca: CertificateAuthority) -> None:
    auth = FakeAuth()

    async def body() -> None:
        async with running(make_app(ca, auth), ca) as url:
            mgr = CertificateManager(
                url, lambda: "tok-app", ca.root_pem, validity_seconds=2, retry_initial=0.05
            )
            rotated: asyncio.Queue[CertBundle] = asyncio.Queue()
            mgr.add_listener(rotated.put_nowait)
            try:
                old = await mgr.get(APP)
                # The second request fails: the renewal must retry and still rotate.
                auth.fail_next = 1
                new = await asyncio.wait_for(rotated.get(), WAIT)
                assert auth.calls >= 3
                check_bundle(new, ca, APP)
                assert new.chain_pem != old.chain_pem and new.key_pem != old.key_pem
                assert new.not_after >= old.not_after
                assert await mgr.get(APP) is new
                # And again, from the renewed certificate.
                newer = await asyncio.wait_for(rotated.get(), WAIT)
                assert newer.leaf.serial_number != new.leaf.serial_number
                mgr.forget(APP)
            finally:
                await mgr.close()

    run(body())


def _answering(chain: list[bytes]) -> web.Application:
    """A CA stand-in that answers every request with ``chain``, whatever was asked."""

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"certChain": [p.decode() for p in chain]})

    app = web.Application()
    app.router.add_post("/v1/certificate", handler)
    return app


def test_client_rejects_untrustworthy_answers(ca: CertificateAuthority) -> None:
    rogue = CertificateAuthority.create(TD)
    some_key = ec.generate_private_key(ec.SECP256R1()).public_key()

    async def expect(app: web.Application, root: bytes, match: str) -> None:
        async with running(app, ca) as url:
            mgr = CertificateManager(url, lambda: "tok-app", root)
            try:
                with pytest.raises(CertificateError, match=match):
                    await mgr.get(APP)
            finally:
                await mgr.close()

    async def body() -> None:
        wrong_key = ca.issue(some_key, uris=[APP], ttl_seconds=60)
        await expect(_answering(wrong_key), ca.root_pem, "other than the one we sent")
        # The CA's TLS certificate comes from `ca`: a client trusting only `rogue` refuses it.
        await expect(_answering(wrong_key), rogue.root_pem, "unreachable")

    run(body())


def test_client_checks_san_and_chain(ca: CertificateAuthority) -> None:
    """The answer must name the requested identity and chain to the trusted root."""

    async def body() -> None:
        rogue = CertificateAuthority.create(TD)

        def signing_as(issuer: CertificateAuthority, names: list[str]) -> web.Application:
            async def sign(request: web.Request) -> web.Response:
                csr = x509.load_pem_x509_csr((await request.json())["csr"].encode())
                chain = issuer.issue(csr.public_key(), uris=names, ttl_seconds=60)
                return web.json_response({"certChain": [p.decode() for p in chain]})

            app = web.Application()
            app.router.add_post("/v1/certificate", sign)
            return app

        for issuer, names, match in (
            (ca, [OTHER], "names"),
            (ca, [APP, OTHER], "names"),
            (rogue, [APP], "does not verify"),
        ):
            app = signing_as(issuer, names)
            async with running(app, ca) as url:
                mgr = CertificateManager(url, lambda: "tok-app", ca.root_pem)
                try:
                    with pytest.raises(CertificateError, match=match):
                        await mgr.get(APP)
                finally:
                    await mgr.close()

    run(body())


def test_file_token_is_reread(tmp_path: Any) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    source = file_token(str(path))
    assert source() == "first"
    path.write_text("second")
    assert source() == "second"


# -- production Kubernetes backends, against a fake API server -------------------------


class FakeApiServer:
    """Just enough of the Kubernetes API for TokenReview, pod lists, Secrets, ConfigMaps."""

    API_TOKEN = "ca-own-token"

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, str]] = {}
        self.pods = [
            self._pod("default", "app-1", "node-1", "app", "Running"),
            self._pod("prod", "db-0", "node-1", None, "Running"),  # the default SA
            self._pod("batch", "job-1", "node-1", "batch", "Succeeded"),
            self._pod("default", "other-1", "node-2", "other", "Running"),
        ]
        self.app = web.Application(middlewares=[self._check_token])
        r = self.app.router
        r.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._review)
        r.add_get("/api/v1/pods", self._list_pods)
        r.add_get("/api/v1/namespaces/{ns}/secrets/{name}", self._get_secret)
        r.add_post("/api/v1/namespaces/{ns}/secrets", self._create_secret)
        r.add_post("/api/v1/namespaces/{ns}/configmaps", self._create_cm)
        r.add_patch("/api/v1/namespaces/{ns}/configmaps/{name}", self._patch_cm)

    @staticmethod
    def _pod(ns: str, name: str, node: str, sa: str | None, phase: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"nodeName": node}
        if sa:
            spec["serviceAccountName"] = sa
        return {
            "metadata": {"namespace": ns, "name": name},
            "spec": spec,
            "status": {"phase": phase},
        }

    @web.middleware
    async def _check_token(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.API_TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        return await handler(request)

    async def _review(self, request: web.Request) -> web.Response:
        review = await request.json()
        self.reviews.append(review)
        users = {
            "tok-zt1": ("system:serviceaccount:istio-system:ztunnel", "node-1"),
            "tok-admin": ("kubernetes-admin", None),
        }
        entry = users.get(review["spec"]["token"])
        if entry is None:
            review["status"] = {"authenticated": False, "error": "invalid bearer token"}
        else:
            extra = {"authentication.kubernetes.io/pod-name": ["ztunnel-a"]}
            if entry[1]:
                extra["authentication.kubernetes.io/node-name"] = [entry[1]]
            review["status"] = {
                "authenticated": True,
                "user": {"username": entry[0], "extra": extra},
            }
        return web.json_response(review, status=201)

    async def _list_pods(self, request: web.Request) -> web.Response:
        field, _, value = request.query["fieldSelector"].partition("=")
        assert field == "spec.nodeName"
        matching = [p for p in self.pods if p["spec"]["nodeName"] == value]
        start = int(request.query.get("continue", "0"))
        limit = 1  # force pagination whatever the client asked for
        meta = {"continue": str(start + limit)} if start + limit < len(matching) else {}
        return web.json_response({"items": matching[start : start + limit], "metadata": meta})

    async def _get_secret(self, request: web.Request) -> web.Response:
        data = self.secrets.get((request.match_info["ns"], request.match_info["name"]))
        if data is None:
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response({"data": data})

    async def _create_secret(self, request: web.Request) -> web.Response:
        doc = await request.json()
        key = (request.match_info["ns"], doc["metadata"]["name"])
        if key in self.secrets:
            return web.json_response({"message": "already exists"}, status=409)
        self.secrets[key] = doc["data"]
        return web.json_response(doc, status=201)

    async def _create_cm(self, request: web.Request) -> web.Response:
        doc = await request.json()
        key = (request.match_info["ns"], doc["metadata"]["name"])
        if key in self.configmaps:
            return web.json_response({"message": "already exists"}, status=409)
        self.configmaps[key] = dict(doc["data"])
        return web.json_response(doc, status=201)

    async def _patch_cm(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/merge-patch+json"
        key = (request.match_info["ns"], request.match_info["name"])
        self.configmaps[key].update((await request.json())["data"])
        return web.json_response({"data": self.configmaps[key]})


def test_token_review_and_pod_listing(ca: CertificateAuthority) -> None:
    fake = FakeApiServer()

    async def body() -> None:
        async with running(fake.app, ca) as url:
            auth = token_review_authenticator(
                url, lambda: FakeApiServer.API_TOKEN, ca.root_pem, audiences=["istio-ca"]
            )
            pods = kube_pods_on_node(url, FakeApiServer.API_TOKEN, ca.root_pem)
            try:
                assert await auth("tok-zt1") == Caller(
                    "istio-system", "ztunnel", "node-1", "ztunnel-a"
                )
                assert fake.reviews[-1]["spec"] == {"token": "tok-zt1", "audiences": ["istio-ca"]}
                assert await auth("tok-bogus") is None
                assert await auth("tok-admin") is None  # a user, not a service account
                assert await pods("node-1") == {("default", "app"), ("prod", "default")}
                assert await pods("node-3") == set()
            finally:
                await auth.close()
                await pods.close()

    run(body())


def test_caller_from_token_review_without_node() -> None:
    status = {"authenticated": True, "user": {"username": "system:serviceaccount:a:b"}}
    assert caller_from_token_review(status) == Caller("a", "b")
    assert caller_from_token_review({"authenticated": False}) is None
    bad = {"authenticated": True, "user": {"username": "system:serviceaccount:only-ns"}}
    assert caller_from_token_review(bad) is None


def test_kube_api_store_and_bootstrap(ca: CertificateAuthority) -> None:
    """``KubeSecretStore`` implements the bootstrap's store: create, 409, read back, publish."""
    fake = FakeApiServer()

    async def body() -> None:
        async with running(fake.app, ca) as url:
            kube = KubeClient(url, FakeApiServer.API_TOKEN, ca.root_pem)
            api = KubeSecretStore(kube)
            try:
                made = await load_or_create_root(api, publish_namespaces=["istio-system", "app"])
                stored = fake.secrets[("istio-system", CA_SECRET)]
                assert base64.b64decode(stored[CA_CERT_KEY]) == made.cert_pem
                with pytest.raises(AlreadyExists):
                    await api.create_secret("istio-system", CA_SECRET, {"x": b"y"})
                again = await load_or_create_root(api, publish_namespaces=["app"])
                assert again.root_pem == made.root_pem
                cm = fake.configmaps[("app", ROOT_CONFIGMAP)]
                assert cm[ROOT_CERT_KEY] == made.root_pem.decode()
            finally:
                await kube.close()

    run(body())


# -- bootstrap with an in-memory store -------------------------------------------------


class FakeKube:
    """The ``KubeStore`` protocol in memory; ``racer`` creates the Secret first."""

    def __init__(self, racer: CertificateAuthority | None = None) -> None:
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, str]] = {}
        self.creates = 0
        self.racer = racer

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.secrets.get((namespace, name))

    async def create_secret(self, namespace: str, name: str, data: dict[str, bytes]) -> None:
        self.creates += 1
        if self.racer is not None:  # another replica gets there between our read and create
            self.secrets[(namespace, name)] = {
                CA_CERT_KEY: self.racer.cert_pem,
                CA_KEY_KEY: self.racer.key_pem,
            }
            self.racer = None
        if (namespace, name) in self.secrets:
            raise AlreadyExists(409, "AlreadyExists", "already exists")
        self.secrets[(namespace, name)] = dict(data)

    async def apply_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.configmaps.setdefault((namespace, name), {}).update(data)


def test_bootstrap_creates_and_publishes() -> None:
    kube = FakeKube()
    authority = run(load_or_create_root(kube, publish_namespaces=["istio-system", "default"]))
    stored = kube.secrets[("istio-system", CA_SECRET)]
    assert stored[CA_CERT_KEY] == authority.cert_pem and stored[CA_KEY_KEY] == authority.key_pem
    assert set(kube.configmaps) == {("istio-system", ROOT_CONFIGMAP), ("default", ROOT_CONFIGMAP)}
    for cm in kube.configmaps.values():
        assert cm == {ROOT_CERT_KEY: authority.root_pem.decode()}
    # A second start (or another replica) finds the Secret and uses the same root.
    again = run(load_or_create_root(kube))
    assert again.root_pem == authority.root_pem and kube.creates == 1


def test_bootstrap_uses_an_existing_secret(ca: CertificateAuthority) -> None:
    kube = FakeKube()
    kube.secrets[("mesh", CA_SECRET)] = {CA_CERT_KEY: ca.cert_pem, CA_KEY_KEY: ca.key_pem}
    authority = run(load_or_create_root(kube, "mesh", trust_domain=TD))
    assert authority.root_pem == ca.root_pem and kube.creates == 0
    assert kube.configmaps == {("mesh", ROOT_CONFIGMAP): {ROOT_CERT_KEY: ca.root_pem.decode()}}


def test_bootstrap_adopts_the_winner_of_a_creation_race(ca: CertificateAuthority) -> None:
    kube = FakeKube(racer=ca)
    authority = run(load_or_create_root(kube))
    assert kube.creates == 1
    assert authority.root_pem == ca.root_pem  # theirs, not the one we generated
    assert kube.configmaps[("istio-system", ROOT_CONFIGMAP)][ROOT_CERT_KEY] == ca.root_pem.decode()


def test_bootstrap_refuses_to_replace_a_broken_secret() -> None:
    kube = FakeKube()
    kube.secrets[("istio-system", CA_SECRET)] = {CA_CERT_KEY: b"junk", CA_KEY_KEY: b"junk"}
    with pytest.raises(RootOfTrustError, match="no usable CA"):
        run(load_or_create_root(kube))
    kube.secrets[("istio-system", CA_SECRET)] = {CA_CERT_KEY: b"only a cert"}
    with pytest.raises(RootOfTrustError, match="lacks"):
        run(load_or_create_root(kube))
    assert kube.creates == 0 and not kube.configmaps
