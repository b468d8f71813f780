"""Pod I/O through the API: pods/log from the node agents' files, and pods/exec and
pods/attach, so ``kubectl logs``, ``kubectl exec``, ``kubectl attach`` and
``kubernetes.stream`` work.

exec and attach speak the channels of ``v4``/``v5.channel.k8s.io`` (0 stdin,
1 stdout, 2 stderr, 3 the final Status, 4 resize; v5 adds 255 "stdin closed")
through a :class:`Channels`: over WebSocket, binary frames whose first byte is the
channel (what kubectl 1.30 and later and the official clients use); over a plain
SPDY upgrade (kubectl's fallback, and older kubectl), one SPDY stream per channel
(``spdyupgrade.py``).  The command runs inside the container (its root, network,
UTS and PID namespaces, working directory and environment), as the provider's
``exec`` does; with ``tty`` (``kubectl exec -it``) on a pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import json
import logging
import os
import signal
import struct
import termios
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from ..node import logrelay, podfiles, stdio
from ..node.stdio import write_all
from . import errors, spdyupgrade
from .spdyupgrade import CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT

log = logging.getLogger("apiserver")
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
# over SPDY only v4's Status on the error stream is spoken (client-go offers v4 first)
SPDY_PROTOCOLS = ("v4.channel.k8s.io",)
FOLLOW_POLL_S = 0.2
"""How often a followed log is read again for what was written since."""

# (pod, container) -> the argv prefix and environment that run a command in the
# container (None: it is not running on a node of this cluster)
Enter = Callable[[dict[str, Any], str], tuple[list[str], dict[str, str]] | None]


def pick_container(pod: dict[str, Any], requested: str | None, *,
                   default_first: bool = False, with_init: bool = False) -> str:
    """The container a request means, or the real server's message when it is unclear."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c["name"] for c in spec.get("containers") or ()]
    valid = containers + ([c["name"] for c in spec.get("initContainers") or ()]
                          if with_init else [])
    if not requested:
        if len(containers) == 1 or (default_first and containers):
            return containers[0]
        raise errors.bad_request(
            f"a container name must be specified for pod {name}, choose one of: "
            f"[{' '.join(containers)}]")
    if requested not in valid:
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def _status(code: int) -> bytes:
    """The final Status (channel 3) of a command that exited with ``code``."""
    if code == 0:
        body: dict[str, Any] = {"metadata": {}, "status": "Success"}
    else:
        body = {"metadata": {}, "status": "Failure",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    return json.dumps(body).encode()


class Channels(Protocol):
    """What exec and attach speak through, whatever carries the channels."""

    @property
    def closed(self) -> bool: ...
    async def send(self, channel: int, data: bytes) -> None: ...
    def received(self) -> AsyncIterator[tuple[int, bytes]]: ...
    async def close(self) -> None: ...


class WebSocketChannels:
    """The channels as WebSocket binary frames, the channel number first."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    @property
    def closed(self) -> bool:
        return self.ws.closed

    async def send(self, channel: int, data: bytes) -> None:
        if not self.ws.closed:
            await self.ws.send_bytes(bytes([channel]) + data)

    async def received(self) -> AsyncIterator[tuple[int, bytes]]:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY and msg.data:
                yield msg.data[0], msg.data[1:]

    async def close(self) -> None:
        await self.ws.close()


def _expected_streams(q: Any) -> set[int]:
    """The SPDY streams a remotecommand client opens for these options (the kubelet
    waits for exactly these): error always; stdin, stdout as asked; stderr unless on
    a terminal; resize with a terminal."""
    on = {k: q.get(k) in ("true", "1") for k in ("stdin", "stdout", "stderr", "tty")}
    return ({ERROR} | ({STDIN} if on["stdin"] else set())
            | ({STDOUT} if on["stdout"] else set())
            | ({STDERR} if on["stderr"] and not on["tty"] else set())
            | ({RESIZE} if on["tty"] else set()))


async def open_channels(request: web.Request, what: str
                        ) -> tuple[web.StreamResponse, Channels]:
    """Upgrade ``request`` to the channels: WebSocket, or a plain SPDY upgrade."""
    if spdyupgrade.requested(request):
        protocol = spdyupgrade.negotiate(request, SPDY_PROTOCOLS)
        response, raw, send = await spdyupgrade.upgrade(request, protocol)
        streams = spdyupgrade.ChannelStreams(raw, send)
        try:
            await streams.start(_expected_streams(request.query))
        except spdyupgrade.StreamsMissing as exc:
            exc.response = response
            raise
        return response, streams
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise errors.bad_request(f"{what} needs a connection upgrade: WebSocket "
                                 f"(channel.k8s.io) or {spdyupgrade.UPGRADE}")
    ws = web.WebSocketResponse(protocols=PROTOCOLS, autoping=True)
    await ws.prepare(request)
    return ws, WebSocketChannels(ws)


class PodExec:
    def __init__(self, enter: Enter) -> None:
        self.enter = enter

    async def serve(self, request: web.Request, api: Any, rt: Any, ns: str,
                    name: str) -> web.StreamResponse:
        pod = api.get(rt, ns, name)
        q = request.query
        argv = q.getall("command", [])
        if not argv:
            raise errors.bad_request("you must specify at least 1 command")
        container = pick_container(pod, q.get("container"), default_first=True)
        entry = self.enter(pod, container)
        if entry is None:
            raise errors.bad_request(
                f"container {container} of pod {name} is not running on a node of this "
                "cluster")
        prefix, env = entry
        try:
            response, channels = await open_channels(request, "pods/exec")
        except spdyupgrade.StreamsMissing as exc:
            log.info("exec in %s/%s: %s", ns, name, exc)
            return exc.response or web.Response(status=400)
        want_stdin = q.get("stdin") in ("true", "1")
        try:
            if q.get("tty") in ("true", "1"):
                await _run_on_terminal(channels, [*prefix, *argv], env)
            else:
                await _run_on_pipes(channels, [*prefix, *argv], env, want_stdin)
        finally:
            await channels.close()
        return response


async def _run_on_pipes(channels: Channels, argv: list[str], env: dict[str, str],
                        want_stdin: bool) -> None:
    """stdin, stdout and stderr as pipes: channels 0, 1 and 2."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env,
        stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)  # nsenter forks into the pod's PID namespace

    async def pump(stream: asyncio.StreamReader | None, channel: int) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            await channels.send(channel, chunk)

    async def feed() -> None:
        assert proc.stdin is not None
        async for channel, data in channels.received():
            if channel == STDIN and data:
                proc.stdin.write(data)
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    await proc.stdin.drain()
            elif channel == CLOSE or (channel == STDIN and not data):
                proc.stdin.close()
        with contextlib.suppress(Exception):
            proc.stdin.close()

    feeder = asyncio.ensure_future(feed()) if want_stdin else None
    try:
        await asyncio.gather(pump(proc.stdout, STDOUT), pump(proc.stderr, STDERR))
        code = await proc.wait()
        await channels.send(ERROR, _status(code))
    finally:
        if feeder is not None:
            feeder.cancel()
        await _reap(proc)


async def _run_on_terminal(channels: Channels, argv: list[str],
                           env: dict[str, str]) -> None:
    """``-t``: the command runs on a pseudo-terminal it has as its controlling terminal
    (what a runtime gives a container with ``tty``): its output, stdout and stderr
    alike, is channel 1; channel 0 is typed into it; channel 4 carries kubectl's
    terminal size (``{"Width": .., "Height": ..}``), set on the terminal as the
    kubelet's resize does."""
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env={**env, "TERM": env.get("TERM", "xterm")},
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=_take_terminal)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes] = asyncio.Queue()
    os.set_blocking(master, False)

    def readable() -> None:
        try:
            chunk = os.read(master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process holding the terminal has ended
            chunk = b""
        if not chunk:
            loop.remove_reader(master)
        output.put_nowait(chunk)

    loop.add_reader(master, readable)

    async def pump() -> None:
        while chunk := await output.get():
            await channels.send(STDOUT, chunk)

    async def feed() -> None:
        async for channel, data in channels.received():
            if channel == STDIN and data:
                with contextlib.suppress(OSError):
                    await write_all(master, data)
            elif channel == RESIZE:
                with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                    size = json.loads(data)
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack(
                        "HHHH", int(size["Height"]), int(size["Width"]), 0, 0))

    feeder = asyncio.ensure_future(feed())
    try:
        await pump()
        code = await proc.wait()
        await channels.send(ERROR, _status(code))
    finally:
        feeder.cancel()
        loop.remove_reader(master)
        os.close(master)
        await _reap(proc)


def _take_terminal() -> None:
    """In the child, after setsid: make stdin (the terminal) the controlling one."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill what is left of an exec whose client went away (its process group: nsenter
    forks into the pod's PID namespace), and wait for it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def _container_status(pod: dict[str, Any], container: str) -> dict[str, Any]:
    """The status of ``container`` (an app or init container) in ``pod``, {} if none yet."""
    status = pod.get("status") or {}
    return next((s for s in (status.get("containerStatuses") or []) +
                 (status.get("initContainerStatuses") or []) if s.get("name") == container), {})


def _pod_dir(state_dir: Path, pod: dict[str, Any]) -> Path:
    """The pod's folder on its node agent (same machine, same state folder)."""
    node = (pod.get("spec") or {}).get("nodeName") or "-"
    return podfiles.pod_dir(state_dir / "nodes" / node, pod["metadata"]["uid"])


def _log_path(state_dir: Path, pod: dict[str, Any], container: str, run: int) -> Path:
    """The file the node agent writes run ``run`` (0, 1, ... per restart) of
    ``container`` to."""
    return _pod_dir(state_dir, pod) / "logs" / container / f"{run}.log"


def _still_running(api: Any, rt: Any, ns: str, name: str, container: str,
                   run: int) -> Callable[[], bool]:
    """Whether run ``run`` of the container is still going (the pod is still there, no
    restart since, not terminated)."""
    def running() -> bool:
        try:
            status = _container_status(api.get(rt, ns, name), container)
        except errors.ApiError:
            return False
        return status.get("restartCount", 0) == run and \
            "terminated" not in (status.get("state") or {})
    return running


async def _follow(path: Path, offset: int, running: Callable[[], bool],
                  gone: Callable[[], bool]) -> AsyncIterator[bytes]:
    """What is written to ``path`` after ``offset``, as it is written, until the run
    ends (then what it wrote last) or the client is ``gone``, as the kubelet streams a
    log.  The file is read again every ``FOLLOW_POLL_S``: the container writes it
    directly, nothing announces a write."""
    while True:
        with path.open("rb") as log:
            log.seek(offset)
            chunk = log.read()
        if chunk:
            offset += len(chunk)
            yield chunk
            continue
        if not running() or gone():
            with path.open("rb") as log:  # what was written before it ended
                log.seek(offset)
                rest = log.read()
            if rest:
                yield rest
            return
        await asyncio.sleep(FOLLOW_POLL_S)


class PodLogs:
    """pods/log from the files the node agents write (same machine, same state folder)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    async def serve(self, request: web.Request, api: Any, rt: Any, ns: str,
                    name: str) -> web.StreamResponse:
        pod = api.get(rt, ns, name)
        container = pick_container(pod, request.query.get("container"), with_init=True)
        restarts = _container_status(pod, container).get("restartCount", 0)
        if request.query.get("previous") in ("true", "1"):
            if restarts == 0:
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found')
            restarts -= 1
        path = _log_path(self.state_dir, pod, container, restarts)
        if not path.exists() and restarts > 0:
            # Waiting to restart (back-off): show the last run, as the real kubelet does.
            path = _log_path(self.state_dir, pod, container, restarts - 1)
        if not path.exists():
            raise errors.bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: '
                "no log written yet")
        q = request.query
        stamped = q.get("timestamps") in ("true", "1")
        since_ns = _since_ns(q)
        whole = path.read_bytes()
        offset = len(whole)
        index = logrelay.LineTimes(path).refresh()
        fallback = path.stat().st_mtime_ns
        lines = _timed_lines(whole, 0, index, fallback)
        if since_ns is not None:
            lines = [(line, ns) for line, ns in lines if ns >= since_ns]
        tail = q.get("tailLines")
        if tail and tail.isdigit():
            lines = lines[-int(tail):] if int(tail) else []
        data = b"".join(_stamp(ns) + line if stamped else line for line, ns in lines)
        limit_text = request.query.get("limitBytes")
        limit = int(limit_text) if limit_text and limit_text.isdigit() else None
        if limit is not None:
            data = data[:limit]
        if request.query.get("follow") not in ("true", "1"):
            return web.Response(body=data, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        sent = len(data)
        follow = _follow(path, offset, _still_running(api, rt, ns, name, container, restarts),
                         lambda: request.transport is None or request.transport.is_closing())
        at_line_start = whole.endswith(b"\n") or not whole
        async for chunk in follow:
            if stamped:  # each new line with its time (a line may span chunks)
                index.refresh()
                pieces = []
                for line, stamp in _timed_lines(chunk, offset, index, fallback):
                    pieces.append(_stamp(stamp) + line if at_line_start else line)
                    at_line_start = line.endswith(b"\n")
                offset += len(chunk)
                chunk = b"".join(pieces)
            if limit is not None:
                chunk = chunk[: limit - sent]
            await response.write(chunk)
            sent += len(chunk)
            if limit is not None and sent >= limit:
                break
        await response.write_eof()
        return response


def _since_ns(q: Any) -> int | None:
    """``sinceSeconds``/``sinceTime`` as a time in ns since the epoch (None: all)."""
    if q.get("sinceSeconds"):
        try:
            seconds = int(q["sinceSeconds"])
        except ValueError:
            raise errors.bad_request("sinceSeconds must be a whole number of seconds"
                                     ) from None
        if seconds < 1:
            raise errors.bad_request("sinceSeconds must be greater than 0")
        return time.time_ns() - seconds * 1_000_000_000
    if q.get("sinceTime"):
        try:
            when = datetime.datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise errors.bad_request(f"sinceTime {q['sinceTime']!r} is not an RFC 3339 time"
                                     ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return int(when.timestamp() * 1_000_000_000)
    return None


def _timed_lines(data: bytes, start: int, index: logrelay.LineTimes,
                 fallback: int) -> list[tuple[bytes, int]]:
    """The lines of ``data`` (read at byte ``start`` of the log) with their times."""
    out, pos = [], start
    for line in data.splitlines(keepends=True):
        out.append((line, index.at(pos, fallback)))
        pos += len(line)
    return out


def _stamp(ns: int) -> bytes:
    """The kubelet's timestamp prefix: RFC 3339 with nanoseconds, UTC, and a space."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z ".encode()


class PodAttach:
    """pods/attach: the running container's output from now on (channel 1, and its
    exit on channel 3), as ``kubectl attach`` shows it; with ``stdin`` (``attach -i``,
    ``kubectl run -it``), what the client types goes to the container's stdin, which
    the node keeps open for a container started with ``stdin: true`` (on a terminal
    with ``tty: true``, whose size follows kubectl's): through the node's attach
    socket (``node/stdio.py``)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    async def serve(self, request: web.Request, api: Any, rt: Any, ns: str,
                    name: str) -> web.StreamResponse:
        pod = api.get(rt, ns, name)
        container = pick_container(pod, request.query.get("container"), default_first=True)
        status = _container_status(pod, container)
        if "running" not in (status.get("state") or {}):
            raise errors.bad_request(f"container {container} is not running in pod {name}")
        spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
        want_stdin = request.query.get("stdin") in ("true", "1")
        socket_path = self._socket(pod, container)
        if want_stdin and not (spec.get("stdin") and socket_path.exists()):
            raise errors.bad_request(
                f"container {container} of pod {name} was not started with stdin: true, so "
                f"it has no stdin to attach to; run a shell beside it instead: kubectl exec "
                f"-it {name} -c {container} -- sh")
        run = status.get("restartCount", 0)
        path = _log_path(self.state_dir, pod, container, run)
        offset = path.stat().st_size if path.exists() else 0
        stdin: asyncio.StreamWriter | None = None
        if want_stdin:
            with stdio.short_path(socket_path) as short:
                _, stdin = await asyncio.open_unix_connection(short)
        try:
            response, channels = await open_channels(request, "pods/attach")
        except BaseException as exc:
            if stdin is not None:
                stdin.close()
            if isinstance(exc, spdyupgrade.StreamsMissing):
                log.info("attach to %s/%s: %s", ns, name, exc)
                return exc.response or web.Response(status=400)
            raise
        feeder = asyncio.ensure_future(_feed(channels, stdin)) if stdin is not None else None
        try:
            follow = _follow(path, offset, _still_running(api, rt, ns, name, container, run),
                             lambda: channels.closed)
            async for chunk in follow:
                await channels.send(STDOUT, chunk)
            await channels.send(ERROR, _status(0))
        finally:
            if feeder is not None:
                feeder.cancel()
            if stdin is not None:
                stdin.close()
            await channels.close()
        return response

    def _socket(self, pod: dict[str, Any], container: str) -> Path:
        return podfiles.container_dir(_pod_dir(self.state_dir, pod), container) / \
            stdio.ATTACH_SOCKET


async def _feed(channels: Channels, stdin: asyncio.StreamWriter) -> None:
    """The client's stdin (channel 0) and terminal sizes (channel 4) to the node."""
    async for channel, data in channels.received():
        if channel == STDIN and data:
            stdin.write(stdio.frame(stdio.INPUT, data))
        elif channel == RESIZE:
            stdin.write(stdio.frame(stdio.RESIZE, data))
        elif channel == CLOSE:
            break
        with contextlib.suppress(ConnectionError):
            await stdin.drain()
    # the client's stdin ended (or the client left): the node closes the container's
    # stdin if it is stdinOnce
    stdin.close()
