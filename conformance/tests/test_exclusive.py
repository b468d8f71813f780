"""The mesh lock: shared holders coexist, an exclusive one has the mesh alone."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from conformance.exclusive import holding


def _try(path: Path, mode: int) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_shared_holders_coexist_and_exclude_an_exclusive_one(tmp_path: Path) -> None:
    lock = tmp_path / "mesh.lock"
    with holding(lock, exclusive=False):
        assert _try(lock, fcntl.LOCK_SH)
        assert not _try(lock, fcntl.LOCK_EX)
    assert _try(lock, fcntl.LOCK_EX)  # released on leaving


def test_an_exclusive_holder_has_it_alone_even_when_the_test_fails(tmp_path: Path) -> None:
    lock = tmp_path / "mesh.lock"
    with pytest.raises(RuntimeError), holding(lock, exclusive=True):
        assert not _try(lock, fcntl.LOCK_SH)
        raise RuntimeError("the disruptive test failed")
    assert _try(lock, fcntl.LOCK_SH)
