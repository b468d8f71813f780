"""A run-wide memory of canaries that were never enforced (or never lifted).

A canary (``apps.py``) is how a test knows its change is in force.  When an
implementation never enforces the canary at some enforcement point within the
convergence timeout, every later test relying on a canary there would wait out the
same timeout for the same reason: a ztunnel that ignores DENY made the main job run
for 12.8 minutes that way.  So the first such timeout is written down, and later
tests relying on a canary at that point fail at once, giving it as their reason.

The memory must be shared by every process of the run: xdist workers are separate
processes, and the first timeout may happen in any of them.  So it is a folder the
controlling process makes (and removes at the end of the run) and hands to the
workers, holding one file per enforcement point.  Without a folder (an
``AppNamespace`` made outside the suite's plugin) it lives in this process only.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["CanaryMemory"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class CanaryMemory:
    """Which enforcement points had a canary that never converged, and why."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._local: dict[str, str] = {}

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
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".writing-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(reason)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self._file(point))
        finally:
            os.unlink(tmp)
