"""Reading Kubernetes objects defensively, and the ``Problem`` a bad one becomes.

Every compiler in this package reads plain dicts that may be malformed.  The field
readers here (``_obj``, ``_list``, ``_str``, ``_int`` ...) either return the typed value or
raise ``_Invalid`` naming the field, so a compiler can be written straight-line and the
caller turns any failure into a ``Problem`` (the object is skipped) instead of a crash;
``_UNREADABLE`` is everything such reading may raise.  ``parse_duration`` is here because
both VirtualService and HTTPRoute spell timeouts as durations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import _Compiled

# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input object.  ``skipped``: the whole object was ignored."""

    kind: str
    namespace: str
    name: str
    field: str
    message: str
    skipped: bool = True

    def __str__(self) -> str:
        what = "skipped" if self.skipped else "kept"
        return f"{self.kind} {self.namespace}/{self.name}: {self.field}: {self.message} ({what})"


class _Invalid(Exception):
    """A field the API server would reject; the object is skipped."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


_UNREADABLE = (_Invalid, TypeError, ValueError, AttributeError, KeyError)
"""What compiling a malformed object may raise; all of it becomes a ``Problem``."""


def _problem_from_error(kind: str, obj: object, err: Exception) -> Problem:
    """The ``Problem`` for an object whose compilation raised one of ``_UNREADABLE``."""
    ns, name = _ident(obj)
    if isinstance(err, _Invalid):
        return Problem(kind, ns, name, err.path, err.message)
    # a shape the readers did not foresee: still a problem, never a crash
    return Problem(kind, ns, name, "(unreadable)", repr(err))


def _warning_problems(kind: str, c: _Compiled) -> list[Problem]:
    """A compiled object's warnings: problems about an object that is kept."""
    return [
        Problem(kind, c.namespace, c.name, path, message, skipped=False)
        for path, message in c.warnings
    ]


# --------------------------------------------------------------------------- durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: object) -> float:
    """Seconds in a duration such as ``"1.5s"``, ``"100ms"``, ``"2m"`` or ``"1m30s"``.

    Accepts protobuf JSON durations (``"1.5s"``) and Go/Gateway API ones (``"1h2m"``),
    because VirtualService and HTTPRoute use different spellings of the same idea.  A bare
    ``"0"`` is zero.  Anything else, including a negative or unit-less value, raises
    ``ValueError`` naming the text: a silently misread timeout is worse than an error.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string like '1.5s', got {text!r}")
    s = text.strip()
    if s == "0":
        return 0.0
    if not s:
        raise ValueError("duration is empty")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(
                f"invalid duration {text!r}: expected <number><unit> parts with unit "
                "ns, us, ms, s, m or h (e.g. '1.5s', '100ms', '2m')"
            )
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


# --------------------------------------------------------------------------- field readers


def _meta(obj: object) -> tuple[str, str, str]:
    """(namespace, name, creationTimestamp) of an object, or ``_Invalid``."""
    if not isinstance(obj, Mapping):
        raise _Invalid("(object)", "not an object")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise _Invalid("metadata", "missing or not an object")
    name, ns = meta.get("name"), meta.get("namespace", "default")
    if not isinstance(name, str) or not name:
        raise _Invalid("metadata.name", "missing or not a string")
    if not isinstance(ns, str) or not ns:
        raise _Invalid("metadata.namespace", "not a string")
    created = meta.get("creationTimestamp", "")
    return ns, name, created if isinstance(created, str) else ""


def _ident(obj: object) -> tuple[str, str]:
    """Best-effort namespace/name for a problem report about an unreadable object."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return "?", "?"
    return str(meta.get("namespace", "default")), str(meta.get("name", "?"))


def _obj(value: object, path: str, *, required: bool = False) -> Mapping[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise _Invalid(path, "must be an object")
    return value


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(path, "must be a list")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(path, "must be a string")
    return value


def _int(value: object, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(path, "must be an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _Invalid(path, f"{value} out of range [{lo}, {hi}]")
    return value


def _optional_port(value: object, path: str) -> int | None:
    """A port number (1-65535), or ``None`` when the field is absent."""
    return _int(value, path, 1, 65535) if value is not None else None


def _duration(value: object, path: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise _Invalid(path, str(e)) from None


def _optional_timeout(value: object, path: str) -> float | None:
    """A route timeout in seconds; absent or ``0`` (which disables it) is ``None``."""
    if value is None:
        return None
    return _duration(value, path) or None


def _regex(value: str, path: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as e:
        raise _Invalid(path, f"regex does not compile: {e}") from None


def _lowercase_names(value: object, path: str) -> tuple[str, ...]:
    """A list of header names, lowercased (a ``remove`` list of either API)."""
    return tuple(_str(n, f"{path}[{i}]").lower() for i, n in enumerate(_list(value, path)))


def _rule_label(ns: str, name: str, rule_name: object, index: int) -> str:
    """``ns/name/rule``: a rule's own ``name`` if it has one, else its index."""
    return f"{ns}/{name}/{rule_name if isinstance(rule_name, str) else index}"
