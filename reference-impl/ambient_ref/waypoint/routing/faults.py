"""Fault injection: reading a VirtualService rule's ``fault`` block into ``_Fault``s.

Only VirtualServices inject faults (HTTPRoute has no such field).  ``fault.delay`` and
``fault.abort`` inject only with a ``percentage`` (``percentage.value``, 0-100); without
one nothing is injected, and an abort other than ``httpStatus`` is ignored with a
warning.  The draw per request is ``_Fault.fires`` in the model; the order (delay, then
abort, then the destination) is ``RouteTable``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import _Fault
from .reading import _duration, _int, _Invalid, _obj


def _percent(fault: Mapping[str, Any], path: str) -> float | None:
    """``percentage.value`` (0-100) or ``None`` when absent (then nothing is injected)."""
    if "percentage" not in fault:
        return None
    pct = _obj(fault["percentage"], f"{path}.percentage", required=True)
    value = pct.get("value", 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise _Invalid(f"{path}.percentage.value", "must be a number in [0, 100]")
    return float(value)


def _compile_fault(
    value: object, path: str, warnings: list[tuple[str, str]]
) -> tuple[_Fault | None, _Fault | None]:
    """The (delay, abort) of a VirtualService ``fault`` at ``path``; ``None``: none injected."""
    fault = _obj(value, path)
    delay = abort = None
    if "delay" in fault:
        p = f"{path}.delay"
        d = _obj(fault["delay"], p, required=True)
        seconds = _duration(d.get("fixedDelay"), f"{p}.fixedDelay")
        pct = _percent(d, p)
        delay = _Fault(pct, delay=seconds) if pct is not None else None
    if "abort" in fault:
        p = f"{path}.abort"
        a = _obj(fault["abort"], p, required=True)
        if "httpStatus" not in a:
            warnings.append((p, "only httpStatus aborts are modelled: abort ignored"))
        else:
            status = _int(a["httpStatus"], f"{p}.httpStatus", 200, 599)
            pct = _percent(a, p)
            abort = _Fault(pct, status=status) if pct is not None else None
    return delay, abort
