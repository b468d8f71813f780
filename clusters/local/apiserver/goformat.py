"""Go-style value text: how Go and kubectl print times, durations and JSON values.

Table cells and JSONPath results must read exactly as the real API server and
kubectl write them, which is how Go formats values, not how Python does:
``duration.HumanDuration`` ages (``3m20s``, ``2d3h``), ``metav1.Time`` parsing
and ``translateTimestampSince`` (``<unknown>``, ``<invalid>``), ``%v`` floats
(``1e+21``) and ``json.Marshal`` (sorted keys, HTML-safe escapes).  Plain
functions of values, with no knowledge of objects, kinds or paths.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

__all__ = ["go_text", "human_duration", "parse_time", "since"]


# --------------------------------------------------------------------------- time


def human_duration(delta: timedelta) -> str:
    """Render a duration the way kubectl's AGE column does (``duration.HumanDuration``).

    About two significant figures: ``45s``, ``119s``, ``3m20s``, ``15m``, ``5h10m``,
    ``20h``, ``2d3h``, ``30d``, ``2y45d``.  Up to one second in the future is
    clock skew and shows as ``0s``; further in the future is ``<invalid>``.
    """
    total_us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    seconds = math.trunc(total_us / 1_000_000)  # Go truncates toward zero
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if dy == 0 else f"{years}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (``metav1.Time`` or ``MicroTime``) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # RFC 3339 requires an offset
    return parsed


def since(value: Any, now: datetime) -> str:
    """``translateTimestampSince``: ``<unknown>`` for a missing timestamp."""
    if value is None or value == "":
        return "<unknown>"
    parsed = parse_time(value)
    if parsed is None:
        return "<invalid>"
    return human_duration(now - parsed)


# --------------------------------------------------------------------------- values


def _go_float(value: float) -> str:
    """Go's ``%v`` for a float64: shortest form, exponent only from 1e21."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').rjust(2, '0')}"
    return text


def _go_json(value: Any) -> str:
    """Go's ``json.Marshal``: compact, sorted keys, HTML-safe escapes."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_text(value: Any) -> str:
    """How kubectl's JSONPath prints one value: scalars as text, maps/lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (dict, list)):
        return _go_json(value)
    return str(value)
