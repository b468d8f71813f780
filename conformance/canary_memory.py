"""A run-wide memory of canaries that were never enforced (or never lifted).

A canary (``apps.py``) is how a test knows its change is in force.  When an
implementation never enforces the canary at some enforcement point within the
convergence timeout, every later test relying on a canary there would wait out the
same timeout for the same reason: a ztunnel that ignores DENY made the main job run
for 12.8 minutes that way.  So the first such timeout is written down, and later
tests relying on a canary at that point fail at once, giving it as their reason.

The memory must be shared by every process of the run: xdist workers are separate
processes, and the first timeout may happen in any of them.  So it is a folder the
controlling process names (``for_run``) and hands to the workers, holding one file per
enforcement point.  The folder is made when something is remembered (or when the
first test takes the run's mesh lock, which lives there too: ``exclusive.py``), removed
at the end of the run (``discard``), and, should a run be killed before that, removed by
the next run, which sweeps the folders of controllers no longer running.  Without a
folder (an ``AppNamespace`` made outside the suite's plugin) the memory lives in this
process only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

__all__ = ["CanaryMemory"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
PREFIX = "ambient-canaries-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)-[0-9a-f]+$")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class CanaryMemory:
    """Which enforcement points had a canary that never converged, and why."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._local: dict[str, str] = {}

    @classmethod
    def for_run(cls, parent: Path | None = None) -> CanaryMemory:
        """A memory for a new run, in a folder of its own under ``parent`` (the
        system's temporary folder by default), named after this process; the
        folders left by runs whose process is gone are removed first."""
        parent = parent or Path(tempfile.gettempdir())
        for left in parent.glob(f"{PREFIX}*"):
            owner = _OWNED.match(left.name)
            if owner and not _running(int(owner.group(1))):
                shutil.rmtree(left, ignore_errors=True)
        return cls(parent / f"{PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def discard(self) -> None:
        """Remove the run's folder (the end of the run)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _file(self, point: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{_UNSAFE.sub('-', point)}.reason"

    def failed(self, point: str) -> str | None:
        """The reason the canary at ``point`` never converged, or None if none failed."""
        if self.folder is None:
            return self._local.get(point)
        try:
            return self._file(point).read_text()
        except FileNotFoundError:
            return None

    def remember(self, point: str, reason: str) -> None:
        """Record the first failure at ``point``; a later one keeps the first reason.

        Written to a temporary file and linked into place, so a reader in another
        process never sees half a reason and a concurrent writer never replaces it.
        """
        if self.folder is None:
            self._local.setdefault(point, reason)
            return
        self.folder.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".writing-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(reason)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self._file(point))
        finally:
            os.unlink(tmp)
