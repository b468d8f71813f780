"""kubectl's JSONPath, the subset CRD ``additionalPrinterColumns`` use.

A CRD column names its cell with a path such as ``.status.conditions[?(@.type==
"Ready")].status``; the server parses it once per column (:func:`parse_jsonpath`)
and picks each object's values with :func:`evaluate`.  Fields (``a.b``, ``\\.``
escapes, ``['x']``), recursive descent (``..name``), wildcards, indexes, slices and
``?(@.x op literal)`` filters; comparisons follow kubectl, printing values the Go
way (``goformat``).  Knows nothing of tables or kinds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from .goformat import go_text

__all__ = ["JSONPathError", "Step", "evaluate", "parse_jsonpath"]

Step = tuple[str, Any]
"""One parsed step: ``("field", name)``, ``("index", n)``, ... (see :func:`parse_jsonpath`)."""


class JSONPathError(ValueError):
    """A path outside the supported subset, or malformed."""


_FILTER_RE: Final = re.compile(
    r"""\s*@((?:\.[^\s=!<>]+)*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*$""", re.DOTALL
)


def _split_fields(text: str) -> list[str]:
    """Split ``a.b\\.c`` on unescaped dots; ``\\.`` keeps a dot inside a key."""
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == ".":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def parse_jsonpath(path: str) -> list[Step]:
    """Parse the JSONPath subset CRD printer columns use into steps.

    Steps: ``("field", name)``, ``("recurse", name)``, ``("wild", None)``,
    ``("index", n)``, ``("slice", (start, end))``, ``("filter", (path, op, literal))``.
    """
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[Step] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == ".":
            recurse = text.startswith("..", i)
            i += 2 if recurse else 1
            j = i
            while j < n and text[j] not in ".[":
                j += 2 if text[j] == "\\" else 1
            name = "".join(_split_fields(text[i:j]))
            if not name:
                if recurse:
                    continue
                raise JSONPathError(f"empty field name in {path!r}")
            if name == "*":
                steps.append(("wild", None))
            else:
                steps.append(("recurse" if recurse else "field", name))
            i = j
        elif ch == "[":
            j = _matching_bracket(text, i)
            inner = text[i + 1 : j].strip()
            steps.append(_parse_bracket(inner, path))
            i = j + 1
        else:
            raise JSONPathError(f"unexpected {ch!r} in {path!r}")
    return steps


def _matching_bracket(text: str, start: int) -> int:
    depth, quote = 0, ""
    for j in range(start, len(text)):
        ch = text[j]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return j
    raise JSONPathError(f"unclosed '[' in {text!r}")


def _parse_literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError as exc:
        raise JSONPathError(f"unrecognized literal {text!r}") from exc


def _parse_bracket(inner: str, path: str) -> Step:
    if inner == "*":
        return ("wild", None)
    if inner.startswith("?(") and inner.endswith(")"):
        match = _FILTER_RE.match(inner[2:-1])
        if not match:
            raise JSONPathError(f"unsupported filter {inner!r} in {path!r}")
        sub = [p for p in _split_fields(match.group(1)[1:])] if match.group(1) else []
        op = match.group(2)
        literal = _parse_literal(match.group(3)) if op else None
        return ("filter", (sub, op, literal))
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return ("field", inner[1:-1])
    if ":" in inner:
        start, _, end = inner.partition(":")
        try:
            return (
                "slice",
                (int(start) if start.strip() else None, int(end) if end.strip() else None),
            )
        except ValueError as exc:
            raise JSONPathError(f"bad slice [{inner}] in {path!r}") from exc
    try:
        return ("index", int(inner))
    except ValueError as exc:
        raise JSONPathError(f"bad subscript [{inner}] in {path!r}") from exc


_MISSING: Final = object()


def _follow(value: Any, fields: list[str]) -> Any:
    for name in fields:
        if not isinstance(value, Mapping) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _compare(left: Any, op: str, right: Any) -> bool:
    numbers = (int, float)
    if isinstance(left, numbers) and isinstance(right, numbers) and not isinstance(left, bool):
        a, b = float(left), float(right)
    else:
        a, b = go_text(left), go_text(right)
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    try:
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]  # type: ignore[operator]
    except TypeError:
        return False


def _descendants(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, Mapping):
        if name in value:
            found.append(value[name])
        for child in value.values():
            found.extend(_descendants(child, name))
    elif isinstance(value, list):
        for child in value:
            found.extend(_descendants(child, name))
    return found


def evaluate(steps: list[Step], root: Any) -> list[Any]:
    """All values the path selects, in document order; missing keys select nothing."""
    current = [root]
    for kind, arg in steps:
        nxt: list[Any] = []
        for value in current:
            if kind == "field":
                if isinstance(value, Mapping) and arg in value:
                    nxt.append(value[arg])
            elif kind == "recurse":
                nxt.extend(_descendants(value, arg))
            elif kind == "wild":
                if isinstance(value, Mapping):
                    nxt.extend(value.values())
                elif isinstance(value, list):
                    nxt.extend(value)
            elif kind == "index":
                if isinstance(value, list) and -len(value) <= arg < len(value):
                    nxt.append(value[arg])
            elif kind == "slice":
                if isinstance(value, list):
                    nxt.extend(value[arg[0] : arg[1]])
            elif kind == "filter" and isinstance(value, list):
                sub, op, literal = arg
                for item in value:
                    got = _follow(item, sub)
                    if got is _MISSING:
                        continue
                    if op is None or _compare(got, op, literal):
                        nxt.append(item)
        current = nxt
    return current
