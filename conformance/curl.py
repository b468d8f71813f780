"""The sans-IO half of the suite's request helper: curl argv in, parsed responses out.

The suite sends HTTP the way the walkthrough does, with the real curl inside a client
pod (``cluster.exec(namespace, "deploy/sleep", argv)``), so what is judged is what a
user's workload would see, ztunnel and waypoint included.  This module only builds
the argv and parses what comes back; running it is the caller's business, which keeps
every parsing rule testable on canned output.

One request (:func:`curl_argv` / :func:`parse`) writes everything to one stdout:

* ``-D -`` dumps every response header block (a ``100 Continue``, a ``101`` upgrade,
  then the final response; redirects are not followed) ahead of the body.  Interim
  blocks are the 1xx ones, so the first non-1xx block is the final response and the
  body starts right after its blank line: no guessing, whatever the body contains.
* ``-w`` appends ``\\n<MARKER><http_code>\\n`` after the body, so the body's end is
  known too (and a body without a final newline stays without one).
* No ``-f``: a 404 or 503 is a response to look at, not a curl failure.

Many requests (:func:`batch_argv` / :func:`parse_batch`) are one curl with the URL
repeated: curl runs the transfers in order over a reused connection and writes each
body followed by the same write-out, so thousands of responses cost one exec.

One request to each of several URLs (:func:`each_argv` / :func:`parse_each`) is one
curl too, each transfer on a connection of its own and reported with its own exit
code (``%{exitcode}``, curl >= 7.75), so "reset by a policy" is told apart from
"answered" per URL: a policy matrix observes a client's view of many destinations
with one exec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "CURL_EXIT_CONNECT_FAILED",
    "CURL_EXIT_RECV_ERROR",
    "CURL_EXIT_TIMEOUT",
    "MARKER",
    "KeptAlive",
    "Outcome",
    "Response",
    "Tunnelled",
    "batch_argv",
    "curl_argv",
    "each_argv",
    "kept_alive_argv",
    "parse",
    "parse_batch",
    "parse_each",
    "parse_kept_alive",
    "parse_tunnel",
    "tunnel_argv",
]

MARKER = "~~conformance-curl-4b7e1d~~"
"""Ends each body in stdout; a body containing this exact string is not supported."""
_WRITE_OUT = f"\\n{MARKER}%{{http_code}}\\n"
"""The ``-w`` format: curl expands ``\\n`` and ``%{http_code}`` itself."""
_EACH_WRITE_OUT = f"{MARKER}%{{http_code}} %{{exitcode}}\\n"
""":func:`each_argv`'s ``-w``: bodies go to /dev/null, so stdout is only these lines."""
_EACH_LINE = re.compile(re.escape(MARKER) + r"(\d{3}) (\d+)")
_TUNNEL_WRITE_OUT = f"{MARKER}%{{http_connect}} %{{http_code}}"
""":func:`tunnel_argv`'s ``-w``: the proxy's answer to CONNECT, then the final status."""
_TUNNEL = re.compile(re.escape(MARKER) + r"(\d{3}) (\d{3})")
_KEPT_ALIVE_WRITE_OUT = f"{MARKER}%{{http_code}} %{{num_connects}} %{{exitcode}}\\n"
_KEPT_ALIVE_LINE = re.compile(re.escape(MARKER) + r"(\d{3}) (\d+) (\d+)")
_TAIL = re.compile("\n" + re.escape(MARKER) + r"(\d{3})\n\Z")
_STATUS_LINE = re.compile(r"HTTP/(\d(?:\.\d)?) +(\d{3})(?: .*)?")

CURL_EXIT_CONNECT_FAILED = 7
"""Nothing listening, or the connection refused."""
CURL_EXIT_TIMEOUT = 28
"""``--max-time`` or ``--connect-timeout`` ran out."""
CURL_EXIT_RECV_ERROR = 56
"""Receiving failed; what curl reports when ztunnel resets a connection a policy denies."""

_BASE = ("curl", "-q", "-sS", "-g")
"""-q: ignore any .curlrc in the client image; -sS: no progress meter, errors still on
stderr; -g: brackets and braces in a URL are literal, not a glob."""

_MAX_BATCH_ARGV = 512 * 1024
"""kubectl exec sends argv in the request URL, which API servers cap at about 1 MiB."""


@dataclass(frozen=True)
class Response:
    """What one curl run said: the final response (if any) and how curl itself ended."""

    status: int | None
    """The final response's status; None when curl failed before one arrived."""
    headers: Mapping[str, list[str]]
    """The final response's headers: lower-cased names, every value in order received."""
    body: str
    exit_code: int
    """curl's own exit code (0 success, 7 refused, 28 timeout, 56 reset, ...)."""
    stderr: str
    version: str | None = None
    """The final response's HTTP version as in its status line: "1.1", "2", ..."""
    interim: tuple[int, ...] = field(default=())
    """Statuses of the 1xx blocks before the final response (100 Continue, 101 ...)."""

    def header(self, name: str) -> str | None:
        """One header's value, repeated fields joined by ", " (RFC 9110); None if absent."""
        values = self.headers.get(name.lower())
        return None if not values else ", ".join(values)

    @property
    def ok(self) -> bool:
        """curl succeeded and the response is 2xx or 3xx."""
        return self.exit_code == 0 and self.status is not None and 200 <= self.status < 400

    @property
    def reset(self) -> bool:
        """The connection was reset: how an L4 deny by ztunnel looks from the client."""
        return self.exit_code == CURL_EXIT_RECV_ERROR


# -- argv ------------------------------------------------------------------------------------


def _seconds(label: str, value: float) -> str:
    if not value > 0:
        raise ValueError(f"{label} must be > 0 seconds, got {value!r}")
    return f"{value:g}"


def _header_args(headers: Mapping[str, str] | None) -> list[str]:
    args: list[str] = []
    for name, value in (headers or {}).items():
        if not name or any(c in name for c in ":;\r\n ") or any(c in value for c in "\r\n"):
            raise ValueError(f"cannot send header {name!r}: {value!r}")
        # "Name:" would make curl drop the header; "Name;" sends it empty.
        args += ["-H", f"{name}: {value}" if value else f"{name};"]
    return args


def _method_args(method: str, data: str | None) -> list[str]:
    method = method.upper()
    if method == "HEAD":
        if data is not None:
            raise ValueError("a HEAD request cannot carry data")
        # -I writes the header block to stdout by itself; with -D - it came out twice.
        return ["-I"]
    if method != "GET":
        return ["-X", method]
    # With data curl would switch to POST; the caller asked for GET.
    return ["-X", "GET"] if data is not None else []


def _check_url(url: str) -> None:
    if not url or any(c.isspace() for c in url):
        raise ValueError(f"not a URL curl can be given: {url!r}")


def curl_argv(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    data: str | None = None,
    timeout: float = 10,
    connect_timeout: float | None = None,
    insecure: bool = False,
) -> list[str]:
    """argv for one request whose stdout :func:`parse` reads back unambiguously.

    ``insecure`` skips verifying an HTTPS server's certificate (``--insecure``), for a
    request whose point is what the server answers, not who it is.

    ``timeout`` bounds the whole transfer (``--max-time``): a policy that drops rather
    than resets must still end the call.  The URL is passed with ``--url`` and URL
    globbing is off, so no URL is ever read as an option or a pattern.  Data
    goes as ``--data-raw``: sent byte for byte, and a leading ``@`` is not a file name.
    """
    _check_url(url)
    argv = [*_BASE]
    argv += _method_args(method, data)
    if method.upper() != "HEAD":
        argv += ["-D", "-"]
    argv += _header_args(headers)
    if data is not None:
        argv += ["--data-raw", data]
    argv += ["--max-time", _seconds("timeout", timeout)]
    if connect_timeout is not None:
        argv += ["--connect-timeout", _seconds("connect_timeout", connect_timeout)]
    if insecure:
        argv.append("--insecure")
    argv += ["-w", _WRITE_OUT, "--url", url]
    return argv


def batch_argv(
    url: str,
    count: int,
    *,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    timeout: float = 10,
) -> list[str]:
    """argv for ``count`` requests to ``url`` in one curl; read with :func:`parse_batch`.

    The transfers run one after another and curl reuses the connection.  That is fine
    for what the batch is for, weighted routes at a waypoint: the waypoint balances
    each HTTP request, not each connection, so one connection samples the split as
    well as many.  (An L4-only split, balanced per connection, cannot be measured this
    way.)  One curl cannot vary a header per request, so no request id is added;
    responses are told apart by their bodies.  ``timeout`` applies to each transfer.

    The argv grows with ``count`` and travels in the exec request's URL, so counts
    whose argv passes 512 KiB are refused: send several batches instead.
    """
    _check_url(url)
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    argv = [*_BASE]
    argv += _method_args(method, None)
    argv += _header_args(headers)
    argv += ["--max-time", _seconds("timeout", timeout), "-w", _WRITE_OUT]
    argv += ["--url", url] * count
    size = sum(len(arg.encode()) + 1 for arg in argv)
    if size > _MAX_BATCH_ARGV:
        raise ValueError(
            f"{count} requests make a {size}-byte argv (limit {_MAX_BATCH_ARGV}): "
            "split them into several batches"
        )
    return argv


def each_argv(urls: list[str], *, timeout: float = 10,
              per_second: int | None = None) -> list[str]:
    """argv for one GET to each of ``urls``, in order; read with :func:`parse_each`.

    Each transfer asks the server to close (``Connection: close``), so no two share a
    connection: a connection-level decision (an L4 policy) is taken for every URL.
    Bodies are discarded; ``timeout`` applies to each transfer.  ``per_second`` starts
    at most that many transfers a second (``--rate``, curl >= 7.84): steady traffic.
    """
    if not urls:
        raise ValueError("each_argv needs at least one URL")
    argv = [*_BASE, "-H", "Connection: close", "--max-time", _seconds("timeout", timeout),
            "-w", _EACH_WRITE_OUT]
    if per_second is not None:
        if per_second < 1:
            raise ValueError(f"per_second must be at least 1, not {per_second}")
        argv += ["--rate", f"{per_second}/s"]
    for url in urls:
        _check_url(url)
        argv += ["-o", "/dev/null", "--url", url]
    return argv


def tunnel_argv(proxy: str, url: str, *, timeout: float = 10) -> list[str]:
    """argv for a GET of ``url`` through ``proxy`` with HTTP/1.1 ``CONNECT``
    (``--proxytunnel``), bodies discarded; read with :func:`parse_tunnel`.  What a
    client outside the mesh does when it speaks plaintext to an HBONE port."""
    _check_url(proxy)
    _check_url(url)
    return [*_BASE, "--proxytunnel", "--proxy", proxy, "--max-time", _seconds("timeout", timeout),
            "-o", "/dev/null", "-w", _TUNNEL_WRITE_OUT, "--url", url]


def kept_alive_argv(url: str, count: int, *, per_second: int, timeout: float = 10) -> list[str]:
    """argv for ``count`` GETs of ``url`` at ``per_second`` on one kept-alive connection
    as long as it lasts, stopping at the first failure (``--fail-early``); read with
    :func:`parse_kept_alive`.  Each line says whether that transfer had to connect."""
    if count < 1 or per_second < 1:
        raise ValueError("kept_alive_argv needs a count and a rate of at least 1")
    _check_url(url)
    argv = [*_BASE, "--fail-early", "--rate", f"{per_second}/s",
            "--max-time", _seconds("timeout", timeout), "-w", _KEPT_ALIVE_WRITE_OUT]
    for _ in range(count):
        argv += ["-o", "/dev/null", "--url", url]
    return argv


# -- parsing ---------------------------------------------------------------------------------


def _read_block(text: str, pos: int) -> tuple[list[str], int] | None:
    """The header block starting at ``pos`` (lines without endings) and where it ends."""
    if not text.startswith("HTTP/", pos):
        return None
    lines: list[str] = []
    while True:
        end = text.find("\n", pos)
        if end == -1:  # cut short: the rest is all header, no body
            lines.append(text[pos:].rstrip("\r"))
            return lines, len(text)
        line = text[pos:end].rstrip("\r")
        pos = end + 1
        if not line:
            return lines, pos
        lines.append(line)


def _headers(lines: list[str]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t") and last is not None:  # obsolete line folding
            headers[last][-1] = f"{headers[last][-1]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            continue
        last = name.strip().lower()
        headers.setdefault(last, []).append(value.strip())
    return headers


def parse(exit_code: int, stdout: str, stderr: str) -> Response:
    """Read the stdout of :func:`curl_argv`'s curl (or of plain ``curl -D -``).

    Handles CRLF or bare LF, HTTP/1.x and HTTP/2 status lines, interim 1xx blocks,
    an empty body, and curl failing before any response (no output; status None).
    """
    tail = _TAIL.search(stdout)
    written_code = None
    if tail:
        written_code = int(tail.group(1))
        stdout = stdout[: tail.start()]

    pos = 0
    interim: list[int] = []
    while block := _read_block(stdout, pos):
        lines, pos = block
        match = _STATUS_LINE.fullmatch(lines[0])
        if not match:
            raise ValueError(f"curl output has a malformed status line: {lines[0]!r}")
        status = int(match.group(2))
        if 100 <= status < 200:
            interim.append(status)
            continue
        return Response(
            status=status,
            headers=_headers(lines[1:]),
            body=stdout[pos:],
            exit_code=exit_code,
            stderr=stderr,
            version=match.group(1),
            interim=tuple(interim),
        )
    # No final header block: curl failed first (or the server spoke no HTTP/1+).
    return Response(
        status=written_code or None,
        headers={},
        body=stdout[pos:],
        exit_code=exit_code,
        stderr=stderr,
        interim=tuple(interim),
    )


def parse_batch(stdout: str) -> list[tuple[int, str]]:
    """``(status, body)`` per completed transfer of :func:`batch_argv`'s curl, in order.

    Status is 0 for a transfer that got no response (refused, reset, timed out): curl
    goes on with the next one.  A transfer cut off before its write-out (the exec
    killed mid-run) is left out, so compare the length with the count sent.
    """
    separator = "\n" + MARKER
    pieces = stdout.split(separator)
    results: list[tuple[int, str]] = []
    body = pieces[0]
    for index, piece in enumerate(pieces[1:], start=1):
        code, newline, rest = piece[:3], piece[3:4], piece[4:]
        if not (len(code) == 3 and code.isascii() and code.isdigit() and newline == "\n"):
            raise ValueError(
                f"batch output is not curl's write-out after response {index}: {piece[:40]!r}"
            )
        results.append((int(code), body))
        body = rest
    return results


@dataclass(frozen=True)
class Outcome:
    """One transfer of :func:`each_argv`'s curl: the status (0 when no response came)
    and curl's exit code for that transfer alone."""

    status: int
    exit_code: int

    @property
    def answered(self) -> bool:
        return self.exit_code == 0 and self.status != 0


def parse_each(stdout: str, count: int) -> list[Outcome]:
    """The ``count`` outcomes of :func:`each_argv`'s curl, in URL order.

    Raises ``ValueError`` when stdout holds anything else or fewer lines (curl stopped
    early, the exec was cut short): a missing outcome must not read as a refusal.
    """
    lines = [line for line in stdout.split("\n") if line]
    outcomes = []
    for line in lines:
        match = _EACH_LINE.fullmatch(line)
        if not match:
            raise ValueError(f"not each_argv's write-out: {line[:80]!r}")
        outcomes.append(Outcome(int(match.group(1)), int(match.group(2))))
    if len(outcomes) != count:
        raise ValueError(f"{count} transfers asked for, {len(outcomes)} reported: {stdout[:300]!r}")
    return outcomes


@dataclass(frozen=True)
class Tunnelled:
    """What :func:`tunnel_argv`'s curl saw: the proxy's status for CONNECT and the
    final response's (0 when none came), and curl's exit code."""

    connect_status: int
    status: int
    exit_code: int

    @property
    def any_http_answer(self) -> bool:
        return self.connect_status != 0 or self.status != 0


def parse_tunnel(exit_code: int, stdout: str) -> Tunnelled:
    match = _TUNNEL.search(stdout)
    if not match:
        raise ValueError(f"not tunnel_argv's write-out (curl exit {exit_code}): {stdout[:200]!r}")
    return Tunnelled(int(match.group(1)), int(match.group(2)), exit_code)


@dataclass(frozen=True)
class KeptAlive:
    """One transfer of :func:`kept_alive_argv`'s curl."""

    status: int
    connects: int
    """New connections this transfer made: 0 when it reused the previous one."""
    exit_code: int


def parse_kept_alive(stdout: str) -> list[KeptAlive]:
    """The transfers :func:`kept_alive_argv`'s curl made, in order (fewer than asked
    for when one failed: curl stops there)."""
    transfers = []
    for line in (x for x in stdout.split("\n") if x):
        match = _KEPT_ALIVE_LINE.fullmatch(line)
        if not match:
            raise ValueError(f"not kept_alive_argv's write-out: {line[:80]!r}")
        transfers.append(KeptAlive(*(int(g) for g in match.groups())))
    return transfers
