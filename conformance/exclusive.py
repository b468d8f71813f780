"""Disruptive tests run alone: no other test runs while one breaks the shared mesh.

The suite shares one cluster and one installed mesh between xdist workers.  A
resilience test deletes a ztunnel or scales the control plane to zero; a test
running beside it at that moment would fail for a fault that is not its own (its
policy never in force, its traffic reset).  So every test holds a lock on a file of
the run while it runs (setup to teardown): shared for ordinary tests, exclusive for
``disruptive`` ones, which also restore what they broke before they let go.
``flock`` locks are released by the kernel when a process dies, so an interrupted
worker cannot leave the others waiting.

Disruptive tests are also moved to the end of the collection: xdist hands work out
in collection order, so they meet the fewest ordinary tests still running.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = "disruptive"
LOCK_FILE = "mesh.lock"
"""In the run's shared folder (the canary memory's, which the controller names)."""


@contextmanager
def holding(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold ``path``'s lock, shared or exclusive, for the ``with`` block (created if
    missing; its folder must exist)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock
