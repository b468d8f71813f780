"""What a strategic merge patch needs to know about a type.

The strategic merge patch algorithm (``patch.py``) is generic; the per-type facts
it needs (which lists merge by which key, which fields retain keys) come from the
schema (``schema.py``).  This protocol is the seam between the two, so each side is
testable alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PatchMeta:
    """Patch facts of one field of an object.

    ``strategies`` holds the ``x-kubernetes-patch-strategy`` words of the field
    ("merge", "retainKeys", "replace"); empty means the default: maps merge
    recursively, lists are replaced whole (atomic).  ``merge_key`` is the
    ``x-kubernetes-patch-merge-key`` of a list of objects merged by key.
    ``child`` describes the field's value: for a list, its items; ``None`` when
    nothing is known (a free-form value, which follows the defaults).
    """

    strategies: frozenset[str] = frozenset()
    merge_key: str | None = None
    child: PatchSchema | None = None


class PatchSchema(Protocol):
    """The patch facts of one object type."""

    def meta(self, field: str) -> PatchMeta:
        """Facts of ``field``; unknown fields get ``PatchMeta()``."""
        ...


class FreeForm:
    """A schema that knows nothing: every field follows the defaults."""

    def meta(self, field: str) -> PatchMeta:
        return PatchMeta()
