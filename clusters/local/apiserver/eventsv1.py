"""events.k8s.io/v1 Events: a second view of the core v1 Events, as on a real server.

A real API server stores one kind of Event and serves it in both groups, converting
field by field (kubernetes/kubernetes ``pkg/apis/events/v1/conversion.go``): an Event
written through either group is read through both.  Here the store keeps the core v1
form; these two functions are the conversion.
"""

from __future__ import annotations

from typing import Any

# core v1 field -> events.k8s.io/v1 field, for the fields whose names differ
_RENAMED = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_BACK = {v: k for k, v in _RENAMED.items()}
_ENVELOPE = ("apiVersion", "kind")


def _renamed(obj: dict[str, Any], names: dict[str, str], api_version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": api_version, "kind": "Event"}
    for key, value in obj.items():
        if key not in _ENVELOPE and value is not None:
            out[names.get(key, key)] = value
    return out


def to_events_v1(core: dict[str, Any]) -> dict[str, Any]:
    """A stored (core v1) Event as events.k8s.io/v1 shows it."""
    return _renamed(core, _RENAMED, "events.k8s.io/v1")


def to_core(event: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event in the stored (core v1) form."""
    return _renamed(event, _BACK, "v1")
