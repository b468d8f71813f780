"""Server-side printing: objects as ``meta.k8s.io/v1`` ``Table`` s for ``kubectl get``.

``kubectl get`` does not format objects itself: it asks for
``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns and cells
the server chose.  This module builds that response -- column definitions, one
row per object with the ``includeObject`` payload, list metadata -- from the
kind's printer (``printers``: which columns, which cell text), so people reading
a failed conformance run and scripts parsing it see what a real cluster shows.

The server always prints the wide (priority 1) columns; kubectl hides them
unless ``-o wide``.  Column names are title case ("Name", "Up-to-date"); kubectl
upper-cases them for display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from .printers import pod_conditions, printer_for

__all__ = [
    "INCLUDE_METADATA",
    "INCLUDE_NONE",
    "INCLUDE_OBJECT",
    "TableError",
    "column_definitions",
    "to_table",
]

INCLUDE_OBJECT: Final = "Object"
INCLUDE_METADATA: Final = "Metadata"
INCLUDE_NONE: Final = "None"


class TableError(ValueError):
    """A table request the server must refuse with 400 (e.g. a bad ``includeObject``)."""


def column_definitions(
    kind: str, printer_columns: Sequence[Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The ``columnDefinitions`` a Table of ``kind`` carries (e.g. for the first watch event)."""
    return [dict(c) for c in printer_for(kind, printer_columns)[0]]


def _row_object(obj: Mapping[str, Any], include_object: str, api_version: str) -> Any:
    if include_object == INCLUDE_OBJECT:
        return obj
    if include_object == INCLUDE_NONE:
        return None
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": api_version,
        "metadata": obj.get("metadata") or {},
    }


def to_table(
    kind: str,
    objects: Sequence[Mapping[str, Any]],
    *,
    include_object: str = INCLUDE_METADATA,
    resource_version: str = "",
    now: datetime | None = None,
    printer_columns: Sequence[Mapping[str, Any]] | None = None,
    continue_token: str = "",
    remaining_item_count: int | None = None,
    include_headers: bool = True,
    api_version: str = "meta.k8s.io/v1",
) -> dict[str, Any]:
    """Render ``objects`` of ``kind`` as a ``meta.k8s.io`` ``Table``.

    ``include_object`` is the request's ``includeObject`` parameter: ``Object``
    embeds each full object, ``Metadata`` (the default, also for ``""``) a
    ``PartialObjectMetadata``, ``None`` nothing; anything else raises
    :class:`TableError` (a 400, like the real server).

    For a custom resource pass ``printer_columns`` -- the served CRD version's
    ``additionalPrinterColumns``, ``[]`` when it has none (which yields Name and
    Age).  With ``printer_columns=None`` built-in kinds get their kubectl columns;
    kinds without a printer get Name and Age.

    ``now`` fixes the clock for AGE cells (tests); ``include_headers=False`` omits
    the column definitions, as the server does after the first event of a watch.
    ``api_version`` is ``meta.k8s.io/v1beta1`` when the client asked for that.
    """
    if include_object in ("", None):
        include_object = INCLUDE_METADATA
    if include_object not in (INCLUDE_OBJECT, INCLUDE_METADATA, INCLUDE_NONE):
        raise TableError(f'unrecognized includeObject value: "{include_object}"')
    now = now or datetime.now(UTC)
    definitions, printer = printer_for(kind, printer_columns)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, now)}
        if kind == "Pod" and printer_columns is None:
            conditions = pod_conditions(obj)
            if conditions:
                row["conditions"] = conditions
        row["object"] = _row_object(obj, include_object, api_version)
        rows.append(row)
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    if remaining_item_count is not None:
        metadata["remainingItemCount"] = remaining_item_count
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": [dict(c) for c in definitions] if include_headers else [],
        "rows": rows,
    }
