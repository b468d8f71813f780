"""Observers that run inside the cluster's network namespaces: ``python -m perf.scale.probe``.

Two kinds, each a long-lived process driven by one JSON command per line on stdin and
answering one JSON line per reply on stdout (stdlib only, so it starts fast and adds no
dependency inside a pod's network):

``data --target IP:PORT ...``
    Runs in the client pod's network namespace, so its connections are the pod's own:
    captured by the node's ztunnel, carrying the pod's identity, and judged by the
    ztunnel of each target's node.  This is the most direct evidence that a ztunnel
    *enforces* a policy: a request answered (``allowed``) or a connection closed without
    a byte of response (``denied``, how an L4 denial reaches a client: curl's exit 56).
    ``{"cmd": "watch", "want": "denied", "timeout": 30}`` first checks every target shows
    the opposite state, replies ``{"armed": true}`` and keeps probing every target until
    each shows ``want`` on two probes in a row, then replies with the monotonic time of the
    first of those answers per target.  The caller makes its change between the two
    replies; CLOCK_MONOTONIC is one clock for every process on the machine.

``syncz --url http://127.0.0.1:15014/debug/syncz``
    Runs in the control plane pod's network namespace (so it reaches its monitoring port
    without crossing the mesh).  ``settle`` waits until every ztunnel acknowledged the
    current version and nothing changed for a while; ``watch`` (given the version before a
    change) reports when a newer version appeared and when every ztunnel acknowledged it.

Every loop is bounded in time and in count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

ALLOWED = "allowed"
DENIED = "denied"
OPPOSITE = {ALLOWED: DENIED, DENIED: ALLOWED}
MAX_PROBES = 100_000  # per target per watch: a bound beside the time limit
MAX_POLLS = 200_000


def classify(first_line: bytes | None, error: BaseException | None = None) -> str:
    """What one probe's outcome says about the path.

    ``first_line`` is the first line read from the connection (``b""`` when the peer closed
    without answering); ``error`` what reading raised instead.  An HTTP status below 400
    is ``allowed``; a connection that was accepted (by the client's ztunnel) and then
    closed or reset without a byte is ``denied``.  Anything else names itself, so a broken
    server is never mistaken for a policy decision.
    """
    if error is not None:
        if isinstance(error, ConnectionResetError | BrokenPipeError):
            return DENIED
        if isinstance(error, ConnectionRefusedError):
            return "refused"
        if isinstance(error, TimeoutError):
            return "timeout"
        return f"error:{type(error).__name__}"
    if first_line is None or first_line == b"":
        return DENIED
    parts = first_line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1].isdigit():
        code = int(parts[1])
        return ALLOWED if code < 400 else f"http-{code}"
    return "garbage"


def parse_version(version: str | None) -> tuple[str, int] | None:
    """``"<epoch>.<serial>"`` (the reference control plane's versions) as (epoch, serial).

    None for anything else: an implementation with opaque versions can still be watched
    for "changed and acknowledged", just not ordered.
    """
    if not version or "." not in version:
        return None
    epoch, _, serial = version.rpartition(".")
    return (epoch, int(serial)) if serial.isdigit() else None


def newer(version: str | None, than: str | None) -> bool:
    """Whether ``version`` comes after ``than`` (a different epoch counts as newer)."""
    if version == than or version is None:
        return False
    a, b = parse_version(version), parse_version(than)
    if a is None or b is None:
        return True
    return a[0] != b[0] or a[1] > b[1]


def covers(acked: str | None, version: str) -> bool:
    """Whether a client that acknowledged ``acked`` holds ``version`` or something later."""
    if acked == version:
        return True
    a, v = parse_version(acked), parse_version(version)
    return a is not None and v is not None and a[0] == v[0] and a[1] >= v[1]


def all_acked(doc: dict[str, Any], version: str, clients: int) -> bool:
    """Whether at least ``clients`` sessions are connected and all hold ``version``."""
    sessions = doc.get("clients") or []
    return len(sessions) >= clients and all(covers(s.get("acked"), version) for s in sessions)


# -- data path --------------------------------------------------------------------------------


async def probe_once(host: str, port: int, timeout: float) -> tuple[str, float, float]:
    """One connection and one request: (state, start, end) in monotonic seconds; ``end``
    is when the status line (or the close that replaced it) arrived.

    The response is read to its end (by ``Content-Length``) and the client closes first,
    as curl does.  Both matter on the reference ztunnel: when the server closes first
    (``Connection: close``) or the client aborts with a reset, the next connection through
    the same pooled tunnel answers 20 to 40 ms later, which would blur the measurement.
    """
    start = end = time.monotonic()
    writer = None
    line: bytes | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /scale-probe HTTP/1.1\r\nHost: probe\r\n\r\n")
            await writer.drain()
            line = await reader.readline()
            end = time.monotonic()
            length = 0
            while line:
                header = await reader.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
        state = classify(line)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        if not line:
            end = time.monotonic()
        state = classify(line) if line else classify(None, exc)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()
    return state, start, end


async def _watch_target(host: str, port: int, want: str, deadline: float, interval: float,
                        timeout: float, confirm: int) -> dict[str, Any]:
    first: tuple[float, float] | None = None
    streak = probes = 0
    durations: list[float] = []
    last = ""
    while time.monotonic() < deadline and probes < MAX_PROBES:
        budget = max(0.05, min(timeout, deadline - time.monotonic()))
        state, start, end = await probe_once(host, port, budget)
        probes += 1
        durations.append(end - start)
        last = state
        if state == want:
            if streak == 0:
                first = (start, end)
            streak += 1
            if streak >= confirm:
                assert first is not None
                return {"start": first[0], "t": first[1], "probes": probes, "last": last,
                        "probe_ms": _median(durations) * 1000}
        else:
            streak, first = 0, None
        await asyncio.sleep(interval)
    return {"start": None, "t": None, "probes": probes, "last": last,
            "probe_ms": _median(durations) * 1000 if durations else None}


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def _states(targets: list[tuple[str, int]], timeout: float) -> dict[str, str]:
    results = await asyncio.gather(*(probe_once(h, p, timeout) for h, p in targets))
    return {f"{h}:{p}": r[0] for (h, p), r in zip(targets, results, strict=True)}


def serve_data(targets: list[tuple[str, int]], interval: float, timeout: float,
               out: Any = sys.stdout, inp: Any = sys.stdin) -> None:
    """The ``data`` observer's command loop (see the module doc)."""
    for line in inp:
        cmd = json.loads(line)
        if cmd.get("cmd") == "check":
            _reply(out, {"states": asyncio.run(_states(targets, timeout))})
        elif cmd.get("cmd") == "watch":
            _reply_all(out, asyncio.run(_watch(targets, cmd, interval, timeout, out)))
        elif cmd.get("cmd") == "quit":
            return
        else:
            _reply(out, {"error": f"unknown command {cmd.get('cmd')!r}"})


async def _watch(targets: list[tuple[str, int]], cmd: dict[str, Any], interval: float,
                 timeout: float, out: Any) -> list[dict[str, Any]]:
    want = cmd["want"]
    states = await _states(targets, timeout)
    if any(s != OPPOSITE[want] for s in states.values()):
        return [{"armed": False, "states": states}]
    deadline = time.monotonic() + float(cmd.get("timeout", 30))
    tasks = [asyncio.ensure_future(_watch_target(h, p, want, deadline, interval, timeout,
                                                 int(cmd.get("confirm", 2))))
             for h, p in targets]
    _reply(out, {"armed": True, "t": time.monotonic()})
    results = await asyncio.gather(*tasks)
    return [{"done": True,
             "targets": {f"{h}:{p}": r for (h, p), r in zip(targets, results, strict=True)}}]


# -- control plane ----------------------------------------------------------------------------


class SynczClient:
    """Keep-alive GETs of the control plane's monitoring port."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/debug/syncz"
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):  # a kept-alive connection the server closed: once more
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout)
            try:
                self._conn.request("GET", path or self.path)
                resp = self._conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def syncz(self) -> dict[str, Any]:
        status, body = self.get()
        if status != 200:
            raise OSError(f"syncz answered {status}")
        return json.loads(body)


def settle(client: SynczClient, clients: int, quiet: float, timeout: float,
           interval: float) -> dict[str, Any]:
    """Until every ztunnel holds the current version and it stayed current for ``quiet``."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    version: str | None = None
    doc: dict[str, Any] = {}
    for _ in range(MAX_POLLS):
        now = time.monotonic()
        if now > deadline:
            return {"settled": False, "version": version, "syncz": doc}
        try:
            doc = client.syncz()
        except (OSError, ValueError):
            stable_since = None
            time.sleep(interval)
            continue
        current = doc.get("version")
        synced = current is not None and all_acked(doc, current, clients)
        if not synced or current != version or stable_since is None:
            version = current
            stable_since = now if synced else None
        elif now - stable_since >= quiet:
            return {"settled": True, "version": version, "t": now}
        time.sleep(interval)
    return {"settled": False, "version": version, "syncz": doc}


def watch_version(client: SynczClient, base: str, clients: int, timeout: float,
                  interval: float) -> dict[str, Any]:
    """When a version newer than ``base`` appeared, and when every ztunnel held it."""
    deadline = time.monotonic() + timeout
    first: str | None = None
    t_version: float | None = None
    polls = 0
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline and polls < MAX_POLLS:
        polls += 1
        try:
            doc = client.syncz()
        except (OSError, ValueError):
            time.sleep(interval)
            continue
        now = time.monotonic()
        current = doc.get("version")
        if first is None and newer(current, base):
            first, t_version = current, now
        if first is not None and all_acked(doc, first, clients):
            return {"version": first, "t_version": t_version, "t_acked": now, "polls": polls,
                    "current": current}
        time.sleep(interval)
    return {"version": first, "t_version": t_version, "t_acked": None, "polls": polls,
            "syncz": doc}


def serve_syncz(url: str, interval: float, out: Any = sys.stdout, inp: Any = sys.stdin) -> None:
    """The ``syncz`` observer's command loop (see the module doc)."""
    client = SynczClient(url)
    for line in inp:
        cmd = json.loads(line)
        name = cmd.get("cmd")
        try:
            if name == "get":
                status, body = client.get(cmd.get("path"))
                _reply(out, {"status": status, "body": body.decode(errors="replace")})
            elif name == "settle":
                _reply(out, settle(client, int(cmd.get("clients", 1)),
                                   float(cmd.get("quiet", 0.3)), float(cmd.get("timeout", 60)),
                                   interval))
            elif name == "watch":
                _reply(out, watch_version(client, cmd["base"], int(cmd.get("clients", 1)),
                                          float(cmd.get("timeout", 30)), interval))
            elif name == "quit":
                return
            else:
                _reply(out, {"error": f"unknown command {name!r}"})
        except (OSError, http.client.HTTPException, ValueError) as exc:
            _reply(out, {"error": f"{type(exc).__name__}: {exc}"})


def _reply(out: Any, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _reply_all(out: Any, messages: list[dict[str, Any]]) -> None:
    for message in messages:
        _reply(out, message)


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    """Entry point of both observers."""
    parser = argparse.ArgumentParser(prog="python -m perf.scale.probe")
    sub = parser.add_subparsers(dest="mode", required=True)
    data = sub.add_parser("data", help="probe targets through the mesh from a client pod")
    data.add_argument("--target", action="append", required=True, type=_target)
    data.add_argument("--interval", type=float, default=0.02)
    data.add_argument("--timeout", type=float, default=2.0, help="per probe")
    syncz = sub.add_parser("syncz", help="poll the control plane's /debug/syncz")
    syncz.add_argument("--url", default="http://127.0.0.1:15014/debug/syncz")
    syncz.add_argument("--interval", type=float, default=0.01)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        if args.mode == "data":
            serve_data(args.target, args.interval, args.timeout)
        else:
            serve_syncz(args.url, args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
