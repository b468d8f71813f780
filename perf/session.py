"""A perf run on a fresh local cluster, from bring-up to teardown, and its output files.

The cluster is always torn down (``finally``), also on Ctrl-C or SIGTERM, and its
name carries this process's id because cluster names are machine-wide and other
runs may share the machine.  Even a SIGKILL leaves nothing behind: the cluster's
daemon dies with its parent and removes what it made.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conformance.adapters import AdapterConfigError, load_adapter
from perf.gates import GateReport
from perf.runner import PerfError, PerfRunner, RunOptions


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI cancelling a job) unwinds like Ctrl-C, so ``finally`` blocks run."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_local(options: RunOptions, adapter_names: str | Sequence[str], *, nodes: int = 2,
              image_executables: Sequence[str] = ()) -> dict[str, Any]:
    """Bring a local cluster up, run the profile against each adapter of ``adapter_names``
    (in order, on the same pods), tear it down.  ``image_executables`` maps images to
    executables of this machine (the local cluster's ``--image-exec``), as real
    implementations built from source need."""
    from clusters.local.provider import LocalCluster
    from clusters.provider import ClusterError

    names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
    try:
        adapters = [load_adapter(name) for name in names]
    except AdapterConfigError as exc:
        raise PerfError(str(exc)) from None
    t0 = time.monotonic()
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="ah-perf-") as tmp:
        cluster = LocalCluster(f"perf-{os.getpid()}", nodes=nodes, root=tmp,
                               image_executables=list(image_executables))
        try:
            try:
                cluster.up()
            except ClusterError as exc:
                raise PerfError(f"the local cluster did not start: {exc}") from None
            doc = asyncio.run(PerfRunner(cluster, adapters, options).run())
        finally:
            cluster.teardown()
    doc["wall_time_s"] = time.monotonic() - t0
    return doc


def write_outputs(doc: dict[str, Any], out_dir: Path, stem: str | None = None,
                  gates: GateReport | None = None) -> tuple[Path, Path]:
    """``<stem>.json`` and a self-contained ``<stem>.html`` (with the gate verdict, if
    given) in ``out_dir``."""
    from perf.report_html import render

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or f"perf-{doc['labels']['profile']}"
    json_path = out_dir / f"{stem}.json"
    html_path = out_dir / f"{stem}.html"
    json_path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    html_path.write_text(render(doc, gates))
    return json_path, html_path
