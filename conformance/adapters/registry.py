"""Resolve ``--mesh`` values to adapters: a built-in name or a declarative YAML file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import AdapterConfigError, MeshAdapter
from .declarative import DeclarativeAdapter
from .istio import IstioAdapter
from .reference import ReferenceAdapter

BUILTIN: dict[str, Callable[[], MeshAdapter]] = {
    "reference": ReferenceAdapter,
    "istio": IstioAdapter,
}


def load_adapter(name_or_path: str | Path) -> MeshAdapter:
    """``"reference"``, ``"istio"``, or the path of a declarative adapter file.

    A built-in name wins over a file of the same name in the working directory;
    pass ``./reference`` to mean the file.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, str) and text in BUILTIN:
        return BUILTIN[text]()
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return DeclarativeAdapter.from_file(path)
    raise AdapterConfigError(
        f"unknown mesh adapter {text!r}: use one of {', '.join(sorted(BUILTIN))} "
        f"or the path of a declarative adapter YAML file"
    )
