"""A container's standard streams: output to its log, and stdin kept for ``attach``.

Every container's stdout and stderr go, through one pipe, to the log relay
(``logrelay.py``).  A container that asks for ``stdin: true`` gets a stdin the node
keeps open (a pipe), and with ``tty: true`` a pseudo-terminal instead of both pipes,
its controlling terminal, as a runtime gives it; what it prints there is relayed to
the log all the same.  ``kubectl attach -i`` and ``kubectl run -it`` reach that stdin
through a Unix socket beside the container's files (``attach.sock``), which the API
server, on the same machine, connects to.  Frames on it: one byte of kind (0 input,
4 a terminal size as ``{"Width": w, "Height": h}``), four bytes of length, the bytes.
With ``stdinOnce`` the stdin is closed when the first attached client leaves, as the
kubelet does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import struct
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import logrelay

INPUT, RESIZE = 0, 4
HEADER = struct.Struct(">BI")
MAX_FRAME = 1 << 20
ATTACH_SOCKET = "attach.sock"


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits a Unix socket address (108 bytes; a pod's folder
    under a test's temporary folder is longer): the file in its folder, reached
    through an open descriptor of the folder (``/proc/self/fd/<n>/<name>``)."""
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def frame(kind: int, data: bytes) -> bytes:
    return HEADER.pack(kind, len(data)) + data


class Stdio:
    """The streams of one run of a container."""

    def __init__(self, spec: dict[str, Any], log_path: Path, folder: Path) -> None:
        self.wants_stdin = bool(spec.get("stdin"))
        self.tty = bool(spec.get("tty")) and self.wants_stdin
        self.once = bool(spec.get("stdinOnce"))
        self.log_path = log_path
        self.socket_path = folder / ATTACH_SOCKET
        self.child_stdin: int | None = None   # what the process gets, closed after spawn
        self.child_out = -1
        self._stdin: int | None = None        # the node's end of the container's stdin
        self._relay: tuple[asyncio.ReadTransport, logrelay.LogRelay] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._attached_once = False

    async def open(self) -> None:
        if self.tty:
            master, slave = os.openpty()
            self._stdin = os.dup(master)
            os.set_inheritable(self._stdin, False)
            self.child_stdin = self.child_out = slave
            self._relay = await logrelay.start(master, self.log_path)
        else:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            self._relay = await logrelay.start(read_fd, self.log_path)
            self.child_out = write_fd
            if self.wants_stdin:
                stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
                self.child_stdin, self._stdin = stdin_read, stdin_write
        if self._stdin is not None:
            os.set_blocking(self._stdin, False)
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with short_path(self.socket_path) as path:
                    sock.bind(path)
            except OSError:
                sock.close()
                raise
            self._server = await asyncio.start_unix_server(self._attached, sock=sock)

    def spawned(self) -> None:
        """After the spawn (or its failure): the child's ends are the child's alone."""
        for fd in {self.child_stdin, self.child_out}:
            if fd is not None and fd >= 0:
                os.close(fd)
        self.child_stdin, self.child_out = None, -1

    async def _attached(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(HEADER.size)
                kind, size = HEADER.unpack(head)
                if size > MAX_FRAME:
                    break
                data = await reader.readexactly(size)
                if kind == INPUT and self._stdin is not None:
                    await write_all(self._stdin, data)
                elif kind == RESIZE and self.tty and self._stdin is not None:
                    with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                        size_doc = json.loads(data)
                        fcntl.ioctl(self._stdin, termios.TIOCSWINSZ, struct.pack(
                            "HHHH", int(size_doc["Height"]), int(size_doc["Width"]), 0, 0))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            if self.once and not self._attached_once:
                self._attached_once = True
                self._close_stdin()

    def _close_stdin(self) -> None:
        if self._stdin is not None and not self.tty:
            os.close(self._stdin)
            self._stdin = None

    async def finish(self, drain_s: float) -> None:
        """After the process ended: the whole output written (the pipe closes once the
        last process holding it is gone; after ``drain_s`` it is closed anyway), stdin
        and the attach socket gone."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            self._server = None
        if self._relay is not None:
            transport, relay = self._relay
            self._relay = None
            try:
                await asyncio.wait_for(asyncio.shield(relay.done), drain_s)
            except TimeoutError:
                transport.close()
                await relay.done
        if self._stdin is not None:
            os.close(self._stdin)
            self._stdin = None


async def write_all(fd: int, data: bytes) -> None:
    """All of ``data`` to the non-blocking ``fd``, waiting while it is full."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            room: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, room.set_result, None)
            try:
                await room
            finally:
                loop.remove_writer(fd)
