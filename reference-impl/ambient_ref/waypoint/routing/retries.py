"""Retries: reading a VirtualService rule's ``retries`` block into a ``Retry`` policy.

A rule without ``retries`` keeps the mesh default (``DEFAULT_RETRY``); ``attempts: 0`` or
a missing ``attempts`` disables retries; otherwise ``retryOn`` defaults to the mesh
default's conditions.  HTTPRoute rules have no retry field here and always carry the
default.
"""

from __future__ import annotations

from .model import DEFAULT_RETRY, Retry
from .reading import _duration, _int, _obj, _str


def _compile_retries(value: object, path: str) -> Retry | None:
    """The retry policy of a VirtualService ``retries`` at ``path`` (``None``: no retries)."""
    if value is None:
        return DEFAULT_RETRY
    r = _obj(value, path, required=True)
    attempts = _int(r.get("attempts", 0), f"{path}.attempts", 0)
    if attempts <= 0:
        return None
    per_try = r.get("perTryTimeout")
    retry_on = r.get("retryOn")
    return Retry(
        attempts,
        _duration(per_try, f"{path}.perTryTimeout") if per_try else None,
        tuple(x.strip() for x in _str(retry_on, f"{path}.retryOn").split(",") if x.strip())
        if retry_on
        else DEFAULT_RETRY.retry_on,
    )
