"""A container's output, written to its log file with the time each line arrived.

A container runtime's log (CRI's ``<time> stdout F <line>``) keeps a time per line,
which is what ``kubectl logs --timestamps`` prints and ``--since``/``--since-time``
select by.  Here the log file holds the container's bytes unchanged (everything else
reads it as is), and a second file beside it, ``<run>.times``, holds one record per
line: the byte offset where the line starts and the time it was read, in
nanoseconds since the epoch (two little-endian uint64s).  The node agent reads the
container's stdout and stderr from one pipe (the order the container wrote them
in, as a runtime's single stream would keep it), records the times first, then the
bytes, so a reader never sees a line without its time.

``LineTimes`` is the reader's side (the API server's pods/log, ``apiserver/podio.py``).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import struct
import time
from pathlib import Path

RECORD = struct.Struct("<QQ")


def times_path(log_path: Path) -> Path:
    return log_path.with_suffix(".times")


class LogRelay(asyncio.Protocol):
    """Reads the container's output pipe; appends to its log and times files."""

    def __init__(self, log_path: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._log = os.open(log_path, flags, 0o644)
        self._times = os.open(times_path(log_path), flags, 0o644)
        self._offset = os.fstat(self._log).st_size
        self._line_start = True
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        stamp = time.time_ns()
        starts = [self._offset] if self._line_start else []
        newline = data.find(b"\n")
        while newline != -1:
            if newline + 1 < len(data):
                starts.append(self._offset + newline + 1)
            newline = data.find(b"\n", newline + 1)
        self._line_start = data.endswith(b"\n")
        if starts:
            os.write(self._times, b"".join(RECORD.pack(s, stamp) for s in starts))
        os.write(self._log, data)
        self._offset += len(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        for fd in (self._log, self._times):
            os.close(fd)
        if not self.done.done():
            self.done.set_result(None)


async def start(read_fd: int, log_path: Path) -> tuple[asyncio.ReadTransport, LogRelay]:
    """Relay what arrives on ``read_fd`` (the read end of the container's output pipe)
    until every writer closed it."""
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(read_fd, "rb", buffering=0)
    transport, relay = await loop.connect_read_pipe(lambda: LogRelay(log_path), pipe)
    return transport, relay


class LineTimes:
    """A log's line times, read as the relay appends them: ``refresh`` reads only the
    records written since the last read (a followed log is read again and again)."""

    def __init__(self, log_path: Path) -> None:
        self.path = times_path(log_path)
        self.offsets: list[int] = []  # line starts, sorted
        self.stamps: list[int] = []   # their times in ns
        self._read = 0

    def refresh(self) -> LineTimes:
        """Take in the records appended since; none if the log has no times file
        (written before times were kept)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._read)
                raw = f.read()
        except OSError:
            return self
        usable = len(raw) - len(raw) % RECORD.size
        for offset, stamp in RECORD.iter_unpack(raw[:usable]):
            self.offsets.append(offset)
            self.stamps.append(stamp)
        self._read += usable
        return self

    def at(self, offset: int, fallback: int) -> int:
        """The time of the line starting at (or containing) ``offset``."""
        i = bisect.bisect_right(self.offsets, offset) - 1
        return self.stamps[i] if i >= 0 else fallback
