"""AMBIENT-SECURITY: ways around the mesh, tried from the wire.

The other profiles check that the right traffic gets through and the wrong principal
is refused.  These tests try to get around the mesh instead:

* speak plaintext to an enrolled pod's HBONE port (15008) from outside the mesh.
  ztunnel's inbound listener terminates TLS before it reads anything else, and its
  server configuration requires a client certificate chained to the mesh's roots
  (istio/ztunnel ``src/proxy/inbound.rs``, ``Inbound::run``: every accepted connection
  goes through ``InboundAcceptor`` first; ``src/tls/certificate.rs``,
  ``server_config``: ``with_client_cert_verifier``), so plaintext never reaches the
  application; ztunnel's own namespaced tests expect exactly this of an uncaptured
  client (``tests/namespaced.rs``, ``malicious_calls_inpod``: "HBONE: Connection
  succeeds (ztunnel listens) but request fails due to TLS");
* keep a connection open across a DENY that covers it: ztunnel authorizes open
  inbound connections again whenever policies change and closes those no longer
  allowed (istio/ztunnel ``src/proxy/connection_manager.rs``, ``PolicyWatcher::run``
  and ``ConnectionManager::close``).

* present HBONE a certificate from a CA the mesh does not trust, or, with a mesh
  certificate, ask to be tunnelled somewhere the pod does not serve (the suite's probe,
  ``conformance/probes/hbone.py``);
* get the mesh's CA to certify someone else's identity.

The profile's check of a service whose waypoint has no ready pod is in
test_enrollment.py with the other waypoint-availability cases.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conformance import curl, waiting
from conformance.apps import CANARY, AppNamespace, canary_client, principal
from conformance.plugin import skip_as
from conformance.waiting import eventually
from profiles import features as F
from reports.model import SKIP_UNAVAILABLE

pytestmark = pytest.mark.xdist_group("security")

HBONE_PORT = 15008
"""Where ztunnel serves HBONE inside every enrolled pod (istio/ztunnel ``src/config.rs``:
``inbound_addr`` is port 15008)."""
RATINGS = "http://ratings:9080/ratings/0"
REFUSED = (52, 56)
STREAM_RATE = 2
"""Requests a second on the kept-alive connection."""


class Security:
    def __init__(self, mesh: AppNamespace, outside: AppNamespace) -> None:
        self.mesh, self.outside = mesh, outside


@pytest.fixture(scope="module")
def security(namespaces) -> Security:
    mesh = namespaces("sec", extra=canary_client())
    outside = namespaces("sec-out", enroll=False, bookinfo=False)
    return Security(mesh, outside)


# -- plaintext to the HBONE port -----------------------------------------------------------


@pytest.mark.feature(F.HBONE_AUTHN)
def test_plaintext_to_the_hbone_port_never_reaches_the_application(security):
    """A client outside the mesh asks an enrolled pod's HBONE port, in plaintext, to
    tunnel it to the pod's application (HTTP/1.1 CONNECT, what an HBONE request would
    be without TLS), and sends a plain GET there too.  Neither may get any HTTP answer:
    not from the port itself and not from the application behind it.  The same client
    reaches the application's own port (no policy forbids plaintext here), so what
    fails at 15008 fails because of the mesh, not the network.  With nothing
    listening at 15008 the pod's HBONE port is not served at all: no mesh."""
    mesh, outside = security.mesh, security.outside
    ip = mesh.pod("ratings")["status"]["podIP"]
    app_url = f"http://{ip}:9080/ratings/0"
    control = outside.request("sleep", app_url)
    assert control.status == 200, f"the outside client cannot reach ratings at all: {control}"
    hbone = f"{ip}:{HBONE_PORT}"
    tries = {"CONNECT in plaintext": curl.tunnel_argv(f"http://{hbone}", app_url),
             "GET in plaintext": curl.each_argv([f"http://{hbone}/ratings/0"])}
    for what, argv in tries.items():
        r = mesh.cluster.exec(outside.name, "deploy/sleep", argv, timeout=60)
        if what.startswith("CONNECT"):
            seen = curl.parse_tunnel(r.exit_code, r.stdout)
            answered, exit_code = seen.any_http_answer, seen.exit_code
        else:
            [outcome] = curl.parse_each(r.stdout, 1)
            answered, exit_code = outcome.status != 0, outcome.exit_code
        assert exit_code != curl.CURL_EXIT_CONNECT_FAILED, (
            f"{what}: nothing listens on {hbone}: the enrolled pod's HBONE port "
            f"is not served (curl exit 7: {r.stderr.strip()})")
        assert not answered, (f"{what} to {hbone} got an HTTP answer: the HBONE "
                              f"port took plaintext ({r.stdout.strip()[-200:]})")
        assert exit_code != 0, f"{what}: curl succeeded without an answer: {r}"


# -- a connection opened before a DENY ---------------------------------------------------


def deny_sleep_in_namespace(ns: str) -> dict[str, Any]:
    """Namespace-wide, not by selector: Istio's ztunnel re-checks an open connection
    against the destination workload as it was when the connection opened (istio/ztunnel
    ``src/state.rs``, ``assert_rbac``: selector policies come from the captured
    ``dest_workload.authorization_policies``, namespace and mesh-wide ones from the
    current policy store), so only a DENY reaching the workload through its namespace
    or the root namespace closes connections already open.  Measured with istio/ztunnel
    62d82653: a new selector DENY left the connection open for its whole 90 s."""
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "deny-sleep", "namespace": ns},
            "spec": {"action": "DENY",
                     "rules": [{"from": [{"source": {"principals": [principal(ns, "sleep")]}}]}]}}


def canary_at_ratings(ns: str) -> dict[str, Any]:
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "zz-canary-ratings", "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "ratings"}}, "action": "DENY",
                     "rules": [{"from": [{"source": {"principals": [principal(ns, CANARY)]}}]}]}}


@pytest.mark.feature(F.POLICY_RECHECK, F.L4_POLICY, F.TCP_TELEMETRY)
def test_a_connection_open_before_a_deny_is_closed_once_it_is_in_force(security):
    """sleep requests ratings twice a second on one kept-alive connection; once ratings'
    ztunnel counts that connection open, a DENY for sleep in the whole namespace is
    applied, and known to be in force when the canary applied after it is refused.  The
    open connection must be closed: the stream ends in a failure well before its last
    request.  Without the
    re-check every request would go on over the connection admitted before the DENY,
    and the stream would run to its end.

    The stream must not have reconnected before the failure (each earlier request
    reused the first connection), so the failure is the closing of that connection,
    or the refusal of the new one curl opened because it was closed."""
    mesh = security.mesh
    ns = mesh.name
    source = f"spiffe://{principal(ns, 'sleep')}"
    opened_before = mesh.inbound_connections("ratings", source_principal=source)
    count = int(STREAM_RATE * (waiting.DEFAULT_TIMEOUT + 30))  # the run's, read now
    argv = curl.kept_alive_argv(RATINGS, count, per_second=STREAM_RATE)
    result: dict[str, Any] = {}

    def stream() -> None:
        try:
            result["exec"] = mesh.cluster.exec(ns, "deploy/sleep", argv,
                                               timeout=count / STREAM_RATE + 60)
        except Exception as exc:  # re-raised below
            result["error"] = exc

    thread = threading.Thread(target=stream, daemon=True, name="kept-alive stream")
    thread.start()
    try:
        eventually(lambda: mesh.inbound_connections("ratings", source_principal=source),
                   lambda opened: opened > opened_before or not thread.is_alive(),
                   what="ratings' ztunnel counts the stream's connection from sleep "
                        "(istio_tcp_connections_opened_total)")
        assert thread.is_alive(), f"the stream ended before the DENY was applied: {result}"
        mesh.apply_in_force([deny_sleep_in_namespace(ns)], canary_at_ratings(ns), RATINGS,
                            lambda r: r.exit_code in REFUSED)
    finally:
        thread.join(count / STREAM_RATE + 90)
        mesh.cluster.delete([deny_sleep_in_namespace(ns), canary_at_ratings(ns)])
    if "error" in result:
        raise result["error"]
    r = result["exec"]
    transfers = curl.parse_kept_alive(r.stdout)
    assert transfers and transfers[0].status == 200, f"the stream never got going: {r}"
    last = transfers[-1]
    assert len(transfers) < count and last.exit_code != 0, (
        f"all {len(transfers)} requests of the stream were answered: the connection opened "
        "before the DENY stayed open after it was in force")
    early = [i for i, t in enumerate(transfers[1:-1], 1) if t.connects]
    assert not early, (f"the stream reconnected before the DENY (requests {early}): the "
                       "failure cannot be told from a connection lost for another reason")
    assert last.exit_code in (*REFUSED, 18), (
        f"the stream ended with curl exit {last.exit_code}, not a closed or refused "
        f"connection: {r.stderr.strip()[-300:]}")


# -- the CA: certificates only for one's own identity ------------------------------------


def _csr(identity: str) -> tuple[str, bytes]:
    """A PEM request whose only name is ``identity`` (a SPIFFE URI SAN), as ztunnel's are,
    and its key (PEM), which stays with the suite."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    return (csr.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _ask_ca(ns: AppNamespace, client: str, ca: Any, token: str, csr_identity: str,
            identity: str | None = None) -> tuple[curl.Response, bytes]:
    """From ``client``'s pod, with ``token``, the CA asked to certify ``csr_identity``
    (and, if given, the ``identity`` named in the request); the answer and the key."""
    csr, key = _csr(csr_identity)
    body: dict[str, Any] = {"csr": csr}
    if identity:
        body["identity"] = identity
    r = ns.request(client, ca.url, method="POST", data=json.dumps(body),
                   headers={"Authorization": f"Bearer {token}",
                            "Content-Type": "application/json"}, insecure=True)
    return r, key


def _leaf_identities(chain: list[str]) -> list[str]:
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sans.get_values_for_type(x509.UniformResourceIdentifier)


def _service_account_token(cluster, namespace: str, account: str,
                           audience: str | None) -> str:
    """A token for ``account`` from the TokenRequest API: the credential its pods hold."""
    from kubernetes import client

    spec = client.V1TokenRequestSpec(audiences=[audience] if audience else [],
                                     expiration_seconds=600)
    with cluster.api_client() as api:
        made = client.CoreV1Api(api).create_namespaced_service_account_token(
            account, namespace, client.AuthenticationV1TokenRequest(spec=spec))
    return made.status.token


@pytest.mark.feature(F.CA_IDENTITY_BINDING)
def test_a_workload_gets_a_certificate_for_its_own_identity_only(security, adapter, cluster):
    """From inside sleep's pod, with sleep's service-account token, the mesh's CA is
    asked for a certificate three ways: for sleep (the control: it must be issued, and
    name sleep), for notsleep by the CSR's name alone, and for notsleep by naming the
    identity in the request.  Istio certifies the identities of the caller's token and
    lets only the node agent ask for another (istio/istio
    ``security/pkg/server/ca/server.go``, ``CreateCertificate``: the SANs are the
    caller's identities; an impersonated identity needs the node authorizer), so the
    two last must never yield a certificate naming notsleep."""
    ca = adapter.certificate_authority()
    assert ca is not None and ca.protocol == "json-https", (
        f"{adapter.name} claims {F.CA_IDENTITY_BINDING} without a CA the suite can ask")
    mesh = security.mesh
    own, other = (f"spiffe://{principal(mesh.name, sa)}" for sa in ("sleep", "notsleep"))
    token = _service_account_token(cluster, mesh.name, "sleep", ca.audience)

    def ask(csr_identity: str, identity: str | None = None) -> curl.Response:
        return _ask_ca(mesh, "sleep", ca, token, csr_identity, identity)[0]

    control = ask(own)
    assert control.status == 200, f"the CA refused sleep its own identity: {control}"
    assert _leaf_identities(json.loads(control.body)["certChain"]) == [own], control.body[:300]
    for how, r in (("by the CSR's name", ask(other)),
                   ("by naming the identity", ask(own, other)),
                   ("both", ask(other, other))):
        assert r.status is not None, f"asking {how}: no answer from the CA: {r}"
        if r.status == 200:
            named = _leaf_identities(json.loads(r.body)["certChain"])
            assert other not in named, (f"sleep's token obtained a certificate for notsleep "
                                        f"({how}): {named}")
        else:
            assert 400 <= r.status < 500, f"asking {how}: {r.status} {r.body[:200]}"


# -- HBONE as an attacker speaks it --------------------------------------------------------

PROBE_IMAGE = "ambient-harness/hbone-probe:0.1.0"


def _probe(ns: AppNamespace, server: str, authority: str, *,
           certificate: tuple[bytes, bytes] | None = None,
           untrusted_identity: str | None = None) -> dict[str, Any]:
    """One run of the suite's HBONE probe (``conformance/probes/hbone.py``) in a pod of
    its own in ``ns``: a CONNECT to ``authority`` through ``server``, with the mesh
    ``certificate`` (chain PEM, key PEM) or one naming ``untrusted_identity`` from a
    CA made on the spot.  What the probe saw, from its log."""
    args = ["--server", server, "--authority", authority]
    if certificate:
        args += ["--cert-b64", base64.b64encode(certificate[0]).decode(),
                 "--key-b64", base64.b64encode(certificate[1]).decode()]
    else:
        args += ["--untrusted-identity", str(untrusted_identity)]
    name = f"hbone-probe-{uuid.uuid4().hex[:8]}"
    ns.cluster.apply([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                                "containers": [{"name": "probe", "image": PROBE_IMAGE,
                                                "args": args}]}}], namespace=ns.name)
    try:
        ns.cluster.wait("v1", "Pod", name, namespace=ns.name, timeout=waiting.DEFAULT_TIMEOUT,
                        condition=lambda pod: (pod.get("status") or {}).get("phase") in (
                            "Succeeded", "Failed"),
                        description=f"the HBONE probe {name} has run")
        log = ns.cluster.kubectl("logs", name, "-n", ns.name).stdout.strip()
    finally:
        ns.cluster.kubectl("delete", "pod", name, "-n", ns.name, "--wait=false", check=False)
    try:
        return json.loads(log.splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"the HBONE probe printed no result: {log[-500:]!r}") from None


def _probe_available(cluster) -> None:
    if type(cluster).__name__ != "LocalCluster":
        skip_as(SKIP_UNAVAILABLE, f"the suite's HBONE probe ({PROBE_IMAGE}) is only in the "
                                  "local cluster's image catalog so far")


def _recorded(record_property, case: str, result: dict[str, Any]) -> dict[str, Any]:
    record_property(f"probe_{case}", f"status={result['status']} tls={result['tls']} "
                                     f"error={result['error']}")
    return result


@pytest.mark.feature(F.HBONE_AUTHN)
def test_hbone_refuses_a_certificate_from_a_ca_the_mesh_does_not_trust(security, cluster,
                                                                      record_property):
    """From a pod outside the mesh, the suite's HBONE probe presents a certificate naming
    notsleep, from a CA made on the spot, to ratings' port 15008 and asks to be
    tunnelled to ratings.  The server it reaches must be the mesh's (its certificate
    names ratings' identity: the probe got as far as the mesh), and it must refuse
    before any answer: the client certificate has to chain to the mesh's roots
    (istio/ztunnel ``src/tls/certificate.rs``, ``server_config``:
    ``with_client_cert_verifier``; its ``tests/namespaced.rs``
    ``trust_domain_mismatch_rejected`` refuses even the mesh CA's certificate for
    another trust domain)."""
    _probe_available(cluster)
    mesh, outside = security.mesh, security.outside
    ip = mesh.pod("ratings")["status"]["podIP"]
    stranger = _recorded(record_property, "untrusted_ca", _probe(
        outside, f"{ip}:{HBONE_PORT}", f"{ip}:9080",
        untrusted_identity=f"spiffe://{principal(mesh.name, 'notsleep')}"))
    assert stranger["server_identities"] == [
        f"spiffe://{principal(mesh.name, 'bookinfo-ratings')}"], (
        f"the probe did not reach ratings' HBONE server: {stranger}")
    assert stranger["status"] is None, (
        f"a certificate from a CA the mesh does not trust was answered: {stranger}")


@pytest.mark.feature(F.HBONE_AUTHN, F.CA_IDENTITY_BINDING)
def test_hbone_tunnels_only_to_the_pods_own_serving_ports(security, adapter, cluster,
                                                          record_property):
    """From a pod outside the mesh, with a certificate the mesh's CA issued to notsleep,
    the probe asks ratings' port 15008 to tunnel it:

    * to ratings' own port: the control, which must be answered 200 (the probe, the
      certificate and the path work);
    * to a pod on another node: not tunnelled (ztunnel's inbound serves only the pod
      it listens in: istio/ztunnel ``tests/namespaced.rs`` ``hbone_ip_mismatch``);
    * to a port ratings does not serve: not tunnelled (``src/proxy/inbound.rs``: a
      failed connection upstream answers 503).

    It uses the CA to hold a mesh certificate, so it needs the ``ca-identity-binding``
    claim too."""
    _probe_available(cluster)
    ca = adapter.certificate_authority()
    assert ca is not None, f"{adapter.name} claims {F.CA_IDENTITY_BINDING} without a CA"
    mesh, outside = security.mesh, security.outside
    notsleep = f"spiffe://{principal(mesh.name, 'notsleep')}"
    token = _service_account_token(cluster, mesh.name, "notsleep", ca.audience)
    issued, key = _ask_ca(mesh, "notsleep", ca, token, notsleep)
    assert issued.status == 200, f"the CA refused notsleep its own identity: {issued}"
    mesh_cert = ("".join(json.loads(issued.body)["certChain"]).encode(), key)
    ratings = mesh.pod("ratings")
    ip = ratings["status"]["podIP"]
    server = f"{ip}:{HBONE_PORT}"

    def tunnel(case: str, authority: str) -> dict[str, Any]:
        return _recorded(record_property, case,
                         _probe(outside, server, authority, certificate=mesh_cert))

    control = tunnel("control", f"{ip}:9080")
    assert control["status"] == 200, f"the mesh's own certificate was not tunnelled: {control}"
    unserved = tunnel("unserved_port", f"{ip}:9999")
    assert unserved["status"] != 200, f"a port ratings does not serve was tunnelled: {unserved}"
    elsewhere = [p["status"]["podIP"] for p in mesh.pods() if p["status"].get("podIP")
                 and p["spec"].get("nodeName") != ratings["spec"].get("nodeName")]
    if elsewhere:
        misdirected = tunnel("other_node", f"{elsewhere[0]}:9080")
        assert misdirected["status"] != 200, (
            f"ratings' HBONE port tunnelled to {elsewhere[0]} on another node: {misdirected}")
    else:
        record_property("probe_other_node", "not tried: the cluster has one node")
