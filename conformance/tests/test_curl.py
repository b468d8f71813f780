"""The request helper's argv and parser: canned curl output, then the real curl end to end."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conformance.curl import (
    MARKER,
    Outcome,
    Response,
    batch_argv,
    curl_argv,
    each_argv,
    kept_alive_argv,
    parse,
    parse_batch,
    parse_each,
    parse_kept_alive,
    parse_tunnel,
    tunnel_argv,
)

TAIL = f"\n{MARKER}"


def written(stdout: str, code: int) -> str:
    """What curl_argv's ``-w`` appends after the body."""
    return f"{stdout}{TAIL}{code:03d}\n"


# -- argv ------------------------------------------------------------------------------------


def test_get_argv() -> None:
    argv = curl_argv("http://productpage:9080/productpage")
    assert argv[:4] == ["curl", "-q", "-sS", "-g"]
    assert "-X" not in argv
    assert "-f" not in argv
    assert argv[argv.index("-D") + 1] == "-"
    assert argv[argv.index("--max-time") + 1] == "10"
    assert "--connect-timeout" not in argv
    assert "--insecure" not in argv  # verified unless asked
    assert argv[-2:] == ["--url", "http://productpage:9080/productpage"]
    assert "--insecure" in curl_argv("https://istiod:15012/", insecure=True)


def test_post_argv_with_headers_and_timeouts() -> None:
    argv = curl_argv(
        "http://httpbin:8000/post",
        method="post",
        headers={"X-Test": "1", "X-Empty": ""},
        data="@not-a-file",
        timeout=2.5,
        connect_timeout=1,
    )
    assert argv[argv.index("-X") + 1] == "POST"
    assert argv[argv.index("--data-raw") + 1] == "@not-a-file"
    assert argv[argv.index("X-Test: 1") - 1] == "-H"
    assert "X-Empty;" in argv  # "X-Empty:" would tell curl to drop the header
    assert argv[argv.index("--max-time") + 1] == "2.5"
    assert argv[argv.index("--connect-timeout") + 1] == "1"


def test_head_uses_dash_i_and_no_header_dump() -> None:
    argv = curl_argv("http://a/", method="HEAD")
    assert "-I" in argv
    assert "-D" not in argv
    assert "-X" not in argv


def test_get_with_data_stays_get() -> None:
    argv = curl_argv("http://a/", data="x")
    assert argv[argv.index("-X") + 1] == "GET"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {"X-Bad": "a\r\nInjected: 1"}},
        {"headers": {"Bad Name": "1"}},
        {"timeout": 0},
        {"connect_timeout": -1},
        {"method": "HEAD", "data": "x"},
    ],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        curl_argv("http://a/", **kwargs)


def test_url_with_whitespace_raises() -> None:
    with pytest.raises(ValueError, match="URL"):
        curl_argv("http://a/ b")


def test_batch_argv_repeats_the_url() -> None:
    argv = batch_argv("http://reviews:9080/reviews/0", 3, headers={"X-A": "b"})
    assert argv.count("--url") == 3
    assert argv.count("http://reviews:9080/reviews/0") == 3
    assert "-D" not in argv
    assert argv[argv.index("-w") + 1].startswith("\\n" + MARKER)
    assert "X-A: b" in argv


def test_batch_argv_refuses_an_argv_too_long_for_exec() -> None:
    assert len(batch_argv("http://reviews:9080/reviews/0", 5000)) > 10000
    with pytest.raises(ValueError, match="several batches"):
        batch_argv("http://reviews:9080/reviews/0", 50000)
    with pytest.raises(ValueError, match="count"):
        batch_argv("http://a/", 0)


# -- parsing canned output -------------------------------------------------------------------


def test_http11_response_with_crlf() -> None:
    out = written(
        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nX-Multi: a\r\nx-multi: b\r\n"
        "content-length: 11\r\n\r\nhello\nworld",
        200,
    )
    response = parse(0, out, "")
    assert response.status == 200
    assert response.version == "1.1"
    assert response.body == "hello\nworld"
    assert response.header("Content-Type") == "text/html"
    assert response.headers["x-multi"] == ["a", "b"]
    assert response.header("X-MULTI") == "a, b"
    assert response.header("absent") is None
    assert response.ok
    assert not response.reset


def test_interim_100_continue_is_skipped() -> None:
    out = written(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok", 201
    )
    response = parse(0, out, "")
    assert (response.status, response.interim, response.body) == (201, (100,), "ok")


def test_h2c_upgrade_then_http2() -> None:
    out = written(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n"
        "HTTP/2 200 \r\nserver: istio-envoy\r\nx-envoy-upstream-service-time: 3\r\n\r\n{}",
        200,
    )
    response = parse(0, out, "")
    assert (response.status, response.version, response.interim) == (200, "2", (101,))
    assert response.header("server") == "istio-envoy"
    assert response.body == "{}"


def test_redirect_is_not_followed() -> None:
    out = written("HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\n\r\n", 301)
    response = parse(0, out, "")
    assert response.status == 301
    assert response.header("location") == "/new"
    assert response.body == ""
    assert response.ok


def test_error_status_is_a_response_not_a_failure() -> None:
    out = written("HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\n\r\nRBAC: access denied", 403)
    response = parse(0, out, "")
    assert (response.status, response.body, response.ok) == (403, "RBAC: access denied", False)


def test_empty_body() -> None:
    response = parse(0, written("HTTP/1.1 204 No Content\r\n\r\n", 204), "")
    assert (response.status, response.body) == (204, "")


def test_body_that_looks_like_a_header_block_stays_body() -> None:
    body = "HTTP/1.1 500 Oops\r\nx: y\r\n\r\n" + MARKER + "200\n"
    out = written("HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n" + body, 200)
    response = parse(0, out, "")
    assert (response.status, response.body) == (200, body)
    assert "x" not in response.headers


def test_bare_lf_and_no_write_out() -> None:
    response = parse(0, "HTTP/1.0 200 OK\nServer: x\n\nline 1\nline 2\n", "")
    assert (response.status, response.version) == (200, "1.0")
    assert response.header("server") == "x"
    assert response.body == "line 1\nline 2\n"


def test_folded_header_line_is_joined() -> None:
    response = parse(0, written("HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\r\n", 200), "")
    assert response.header("x-long") == "a b"


def test_refused_connection() -> None:
    stderr = "curl: (7) Failed to connect to reviews port 9080: Connection refused\n"
    response = parse(7, written("", 0), stderr)
    assert response == Response(status=None, headers={}, body="", exit_code=7, stderr=stderr)
    assert not response.ok


def test_reset_by_ztunnel() -> None:
    stderr = "curl: (56) Recv failure: Connection reset by peer\n"
    response = parse(56, written("", 0), stderr)
    assert response.reset
    assert response.status is None
    assert not response.ok


def test_no_output_at_all() -> None:
    response = parse(6, "", "curl: (6) Could not resolve host: nowhere\n")
    assert (response.status, response.body, response.headers) == (None, "", {})


def test_reset_after_headers_keeps_the_status() -> None:
    response = parse(56, "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial", "")
    assert (response.status, response.body, response.reset, response.ok) == (
        200,
        "partial",
        True,
        False,
    )


def test_malformed_status_line_raises() -> None:
    with pytest.raises(ValueError, match="status line"):
        parse(0, "HTTP/1.1 abc\r\n\r\n", "")


def test_parse_batch_canned() -> None:
    transfers = ['{"reviews": "v1"}', "", "line\nwith newline\n"]
    stdout = "".join(
        f"{body}{TAIL}{code}\n" for body, code in zip(transfers, ["200", "000", "503"], strict=True)
    )
    assert parse_batch(stdout) == [
        (200, '{"reviews": "v1"}'),
        (0, ""),
        (503, "line\nwith newline\n"),
    ]


def test_parse_batch_drops_a_transfer_cut_short() -> None:
    assert parse_batch("a" + TAIL + "200\nhalf a bo") == [(200, "a")]
    assert parse_batch("") == []


def test_parse_batch_rejects_foreign_output() -> None:
    with pytest.raises(ValueError, match="write-out"):
        parse_batch("x" + TAIL + "2xx\n")


def test_each_argv_one_transfer_per_url_bodies_discarded() -> None:
    argv = each_argv(["http://a:9080/health", "http://b.ns:9080/health"], timeout=3)
    assert argv[argv.index("-H") + 1] == "Connection: close"
    assert argv[argv.index("--max-time") + 1] == "3"
    assert argv[-8:] == ["-o", "/dev/null", "--url", "http://a:9080/health",
                         "-o", "/dev/null", "--url", "http://b.ns:9080/health"]
    with pytest.raises(ValueError):
        each_argv([])
    with pytest.raises(ValueError):
        each_argv(["http://a/ b"])


def test_parse_each_canned() -> None:
    stdout = f"{MARKER}200 0\n{MARKER}000 56\n{MARKER}000 7\n"
    assert parse_each(stdout, 3) == [Outcome(200, 0), Outcome(0, 56), Outcome(0, 7)]
    assert [o.answered for o in parse_each(stdout, 3)] == [True, False, False]


def test_parse_each_refuses_missing_or_foreign_lines() -> None:
    with pytest.raises(ValueError, match="2 transfers asked for, 1 reported"):
        parse_each(f"{MARKER}200 0\n", 2)
    with pytest.raises(ValueError, match="write-out"):
        parse_each(f"<html>{MARKER}200 0\n", 1)


# -- the real curl against a local server ----------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and 100 Continue support
    served: list[tuple[str, int]] = []

    def _reply(self, status: int, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self.served.append((self.path, self.client_address[1]))
        if self.path == "/hello":
            self._reply(200, b"hello\nworld", (("X-Multi", "a"), ("X-Multi", "b")))
        elif self.path == "/reviews":
            version = "v1" if len(self.served) % 2 else "v2"
            self._reply(200, f'{{"version": "{version}"}}'.encode())
        else:
            self._reply(404, b"no such page\n")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._reply(201, self.command.encode() + b" " + body)

    do_PUT = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.served = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _run(argv: list[str], home: Path) -> tuple[int, str, str]:
    # No proxy from the environment and no user curlrc: the request goes to 127.0.0.1.
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HOME=str(home), CURL_HOME=str(home))
    done = subprocess.run(
        ["/usr/bin/curl", *argv[1:]], capture_output=True, text=True, env=env, timeout=30
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="needs /usr/bin/curl")
def test_real_curl_agrees_with_parse(server: str, tmp_path: Path) -> None:
    def request(url: str, **kwargs: Any) -> Response:
        return parse(*_run(curl_argv(url, timeout=10, **kwargs), tmp_path))

    hello = request(f"{server}/hello")
    assert (hello.exit_code, hello.status, hello.version) == (0, 200, "1.1")
    assert hello.body == "hello\nworld"
    assert hello.headers["x-multi"] == ["a", "b"]
    assert hello.header("Content-Length") == "11"
    assert hello.ok

    head = request(f"{server}/hello", method="HEAD")
    assert (head.status, head.body, head.header("content-length")) == (200, "", "11")

    missing = request(f"{server}/nope")
    assert (missing.exit_code, missing.status, missing.body) == (0, 404, "no such page\n")
    assert not missing.ok

    post = request(f"{server}/echo", method="POST", data="a=1&b=2")
    assert (post.status, post.body, post.interim) == (201, "POST a=1&b=2", ())
    put = request(f"{server}/echo", method="PUT", data="x", headers={"Expect": "100-continue"})
    assert (put.status, put.body, put.interim) == (201, "PUT x", (100,))

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = request(f"http://127.0.0.1:{port}/", connect_timeout=5)
    assert (refused.exit_code, refused.status, refused.body) == (7, None, "")
    assert "curl: (7)" in refused.stderr

    _Handler.served = []
    code, stdout, stderr = _run(batch_argv(f"{server}/reviews", 5), tmp_path)
    assert (code, stderr) == (0, "")
    assert parse_batch(stdout) == [
        (200, f'{{"version": "{v}"}}') for v in ("v1", "v2", "v1", "v2", "v1")
    ]
    # One connection for all five: curl reused it.
    assert len({port for _, port in _Handler.served}) == 1

    _Handler.served = []
    urls = [f"{server}/hello", f"http://127.0.0.1:{port}/", f"{server}/nope", f"{server}/hello"]
    code, stdout, _ = _run(each_argv(urls, timeout=5), tmp_path)
    assert parse_each(stdout, 4) == [Outcome(200, 0), Outcome(0, 7), Outcome(404, 0),
                                     Outcome(200, 0)]
    # A connection each, even for the same server: nothing was reused.
    assert len({port for _, port in _Handler.served}) == 3


# -- tunnels and kept-alive streams (the security tests' probes) -----------------------------


def test_each_argv_with_a_rate() -> None:
    argv = each_argv(["http://a/"], per_second=5)
    assert argv[argv.index("--rate") + 1] == "5/s"
    with pytest.raises(ValueError, match="at least 1"):
        each_argv(["http://a/"], per_second=0)


def test_parse_tunnel_and_kept_alive_refuse_other_output() -> None:
    assert parse_tunnel(56, f"{MARKER}000 000").any_http_answer is False
    assert parse_tunnel(0, f"{MARKER}200 404").any_http_answer is True
    with pytest.raises(ValueError, match="not tunnel_argv"):
        parse_tunnel(7, "")
    with pytest.raises(ValueError, match="not kept_alive_argv"):
        parse_kept_alive("HTTP/1.1 200 OK\n")
    with pytest.raises(ValueError):
        kept_alive_argv("http://a/", 0, per_second=1)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="needs /usr/bin/curl")
def test_real_curl_tunnel_tells_an_http_answer_from_none(server: str, tmp_path: Path) -> None:
    # An HTTP server answers CONNECT (501 from http.server): an HTTP answer.
    answered = parse_tunnel(*_run(tunnel_argv(server, "http://198.18.0.1:9080/", timeout=5),
                                  tmp_path)[:2])
    assert answered.any_http_answer and answered.connect_status == 501, answered
    # A listener that hangs up on whatever it reads (a TLS-only port): no answer at all.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.close()

        threading.Thread(target=hang_up, daemon=True).start()
        port = listener.getsockname()[1]
        refused = parse_tunnel(*_run(tunnel_argv(f"http://127.0.0.1:{port}",
                                                 "http://198.18.0.1:9080/", timeout=5),
                                     tmp_path)[:2])
    assert not refused.any_http_answer and refused.exit_code not in (0, 7), refused


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="needs /usr/bin/curl")
def test_real_curl_kept_alive_reuses_one_connection(server: str, tmp_path: Path) -> None:
    code, out, _ = _run(kept_alive_argv(f"{server}/hello", 3, per_second=20), tmp_path)
    transfers = parse_kept_alive(out)
    assert code == 0 and [(t.status, t.connects, t.exit_code) for t in transfers] == [
        (200, 1, 0), (200, 0, 0), (200, 0, 0)]
    assert len({port for _, port in _Handler.served}) == 1  # one client port: one connection
