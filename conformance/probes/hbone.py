"""An HBONE client that reports what the server did: ``python -m conformance.probes.hbone``.

The security tests need to speak HBONE as an attacker would: HTTP/2 ``CONNECT`` over
mutual TLS to an enrolled pod's port 15008, with a certificate of their choosing (the
mesh's, or one from a CA the mesh never trusted) and an authority of their choosing.
The clients' curl (7.88) has no ``--proxy-http2``, so this probe does it with h2
(sans-IO) over the standard library's TLS.  It never verifies the server (it is the
attacker), but reports the identities the server's certificate names, so a test can
tell "refused by the mesh" from "never reached the mesh".

It runs once in its own pod (image ``ambient-harness/hbone-probe``) and prints one
JSON line: ``{"tls": "ok"|"failed", "server_identities": [...], "status": 200|null,
"error": "..."|null}``; its exit status is 0 whenever it could report.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def untrusted_certificate(identity: str) -> tuple[bytes, bytes]:
    """A leaf naming ``identity``, signed by a CA made here and now (so no mesh trusts
    it), with the CA after it in the chain; and the leaf's key.  PEM both."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "not the mesh")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]),
                           critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (leaf.public_bytes(pem) + ca.public_bytes(pem),
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _identities(der: bytes | None) -> list[str]:
    if not der:
        return []
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(sans.get_values_for_type(x509.UniformResourceIdentifier))


def probe(server: tuple[str, int], authority: str, chain_pem: bytes, key_pem: bytes,
          timeout: float = 10) -> dict[str, Any]:
    """One CONNECT to ``authority`` through ``server``; what happened, as a dict."""
    result: dict[str, Any] = {"tls": None, "server_identities": [], "status": None,
                              "error": None}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the attacker does not care who answers
    ctx.set_alpn_protocols(["h2"])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "chain.pem").write_bytes(chain_pem)
        (Path(tmp) / "key.pem").write_bytes(key_pem)
        ctx.load_cert_chain(Path(tmp) / "chain.pem", Path(tmp) / "key.pem")
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection(server, timeout=timeout)
    except OSError as exc:
        result["error"] = f"connect: {exc}"
        return result
    try:
        with ctx.wrap_socket(raw) as tls:
            result["tls"] = "ok"
            result["server_identities"] = _identities(tls.getpeercert(binary_form=True))
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
            conn.initiate_connection()
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [(":method", "CONNECT"), (":authority", authority)])
            tls.sendall(conn.data_to_send())
            while result["status"] is None and result["error"] is None:
                tls.settimeout(max(0.1, deadline - time.monotonic()))
                data = tls.recv(65536)
                if not data:
                    result["error"] = "closed before any answer"
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        result["status"] = int(dict(event.headers)[":status"])
                    elif isinstance(event, h2.events.StreamReset):
                        result["error"] = f"stream reset ({event.error_code})"
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        result["error"] = f"GOAWAY ({event.error_code})"
                tls.sendall(conn.data_to_send())
    except ssl.SSLError as exc:
        result["tls"] = result["tls"] or "failed"
        result["error"] = f"TLS: {exc.reason or exc}"
    except (OSError, h2.exceptions.ProtocolError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hbone-probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=_address, required=True, help="HOST:15008")
    parser.add_argument("--authority", required=True, help="the CONNECT target, IP:PORT")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--untrusted-identity", help="present a certificate naming this SPIFFE "
                     "identity from a CA made on the spot")
    how.add_argument("--cert-b64", help="base64 of the PEM chain to present (leaf first)")
    parser.add_argument("--key-b64", help="base64 of the PEM key of --cert-b64")
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args(argv)
    if args.cert_b64 and not args.key_b64:
        parser.error("--cert-b64 needs --key-b64")
    if args.untrusted_identity:
        chain, key = untrusted_certificate(args.untrusted_identity)
    else:
        chain, key = base64.b64decode(args.cert_b64), base64.b64decode(args.key_b64)
    print(json.dumps(probe(args.server, args.authority, chain, key, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
