"""Prometheus exposition as the suite sees it: text in, flat samples out, then queries.

Telemetry conformance is checked the way an operator would check it: the suite curls
a component's metrics port (ztunnel's or a waypoint's ``/stats/prometheus``) and
looks for samples such as ``istio_requests_total{reporter="waypoint",
response_code="200", ...}``.  Parsing is prometheus_client's, so the suite accepts
what Prometheus' own client accepts; this module flattens families into samples and
adds the few queries the tests need (filter by labels, sum, which label names exist).

Samples keep the name they were exposed under (``istio_requests_total``), which is
the name an operator greps for and the name the Istio docs use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["LabelFilter", "Sample", "label_sets", "parse", "select", "total"]

LabelFilter = str | Callable[[str], bool]
"""A label's exact value, or a predicate on it (a missing label's value is "")."""

_COUNTER_TYPE = re.compile(r"^(#[ \t]+TYPE[ \t]+\S+[ \t]+)counter[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class Sample:
    """One exposed line: name, labels, value (timestamps are not kept)."""

    name: str
    labels: dict[str, str]
    value: float


def _families(text: str) -> list[Metric]:
    return list(text_string_to_metric_families(text))


def _bad_line(lines: list[str]) -> int | None:
    """Index of the first line that fails to parse on its own, if any does."""
    for index, line in enumerate(lines):
        try:
            _families(line + "\n")
        except (ValueError, IndexError, TypeError):
            return index
    return None


def parse(text: str) -> list[Sample]:
    """Every sample in Prometheus text exposition ``text``, in order.

    Raises ValueError naming the first offending line (1-based) when ``text`` is not
    valid exposition, e.g. an HTML error page where metrics were expected.
    """
    text = text.replace("\r\n", "\n")
    # prometheus_client renames the samples of a counter declared without the _total
    # suffix ("# TYPE x counter" / "x 1" comes back as "x_total"); declaring every
    # counter untyped to the parser keeps each sample's name as exposed.  Types are not
    # part of a Sample, so nothing else changes.
    untyped = _COUNTER_TYPE.sub(r"\1untyped", text)
    try:
        families = _families(untyped)
    except (ValueError, IndexError, TypeError) as error:
        lines = text.split("\n")
        index = _bad_line(lines)
        where = f"line {index + 1}: {lines[index][:200]!r}" if index is not None else "somewhere"
        raise ValueError(
            f"not Prometheus text exposition at {where} ({str(error) or type(error).__name__})"
        ) from error
    return [
        Sample(name=s.name, labels=dict(s.labels), value=float(s.value))
        for family in families
        for s in family.samples
    ]


def _matches(labels: dict[str, str], filters: dict[str, LabelFilter]) -> bool:
    for label, wanted in filters.items():
        value = labels.get(label, "")
        if callable(wanted):
            if not wanted(value):
                return False
        elif value != wanted:
            return False
    return True


def select(samples: Iterable[Sample], name: str, /, **label_filters: LabelFilter) -> list[Sample]:
    """The samples called ``name`` (exactly, as exposed) whose labels pass every filter.

    A filter is an exact value or a predicate.  As in PromQL, a label a sample does not
    have reads as "", so ``select(s, n, response_code="")`` finds samples without it.
    """
    return [s for s in samples if s.name == name and _matches(s.labels, label_filters)]


def total(samples: Iterable[Sample], name: str, /, **label_filters: LabelFilter) -> float:
    """The sum of the selected samples' values (0.0 when none match)."""
    return sum((s.value for s in select(samples, name, **label_filters)), 0.0)


def label_sets(samples: Iterable[Sample], name: str, /) -> set[frozenset[str]]:
    """The distinct sets of label NAMES carried by samples called ``name``.

    Lets a test assert that a metric carries the labels the spec requires without
    caring which values a particular run produced.
    """
    return {frozenset(s.labels) for s in samples if s.name == name}
