"""The suite's HBONE probe, off the cluster: its certificates and its command line.
Its wire behaviour is judged on the cluster, where each security test has a control."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from cryptography import x509

from conformance.probes.hbone import main, untrusted_certificate


def test_the_untrusted_certificate_names_the_identity_and_ships_its_own_ca() -> None:
    chain, key = untrusted_certificate("spiffe://cluster.local/ns/a/sa/b")
    leaf, ca = x509.load_pem_x509_certificates(chain)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/a/sa/b"]
    assert leaf.issuer == ca.subject and b"PRIVATE KEY" in key
    # a new CA every time: nothing it signs can be trusted in advance
    assert x509.load_pem_x509_certificates(untrusted_certificate("spiffe://x/y")[0])[1] != ca


def test_a_server_that_hangs_up_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        port = listener.getsockname()[1]
        assert main(["--server", f"127.0.0.1:{port}", "--authority", "198.18.0.1:9080",
                     "--untrusted-identity", "spiffe://x/y", "--timeout", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] is None and result["error"], result


@pytest.mark.parametrize(("argv", "message"), [
    (["--server", "nohost", "--authority", "a:1", "--untrusted-identity", "x"],
     "expected HOST:PORT"),
    (["--server", "h:1", "--authority", "a:1", "--cert-b64", "eA=="], "--cert-b64 needs --key-b64"),
    (["--server", "h:1", "--authority", "a:1"], "one of the arguments"),
])
def test_bad_arguments_name_the_problem(argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
