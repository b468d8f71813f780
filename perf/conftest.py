"""pytest options for ``pytest perf/``: the SLO gates the live short run must meet.

The defaults are deliberately loose: the short profile measures seconds on a
shared 2-core machine, so it is there to catch a gross slowdown or a broken path,
not a 0.2 ms one (that is what ``python -m perf run --profile full`` and
``python -m perf compare`` are for).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.gates import Gates

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perf", "ambient perf runner (perf/)")
    group.addoption("--perf-profile", default="short",
                    help="profile of the live perf test (default: short)")
    group.addoption("--perf-adapter", default="reference", help="mesh adapter to measure")
    group.addoption("--perf-out", default=str(ROOT / "reports" / "out" / "perf"),
                    help="where the live run writes its JSON and HTML")
    group.addoption("--perf-max-p99-overhead-ms", type=float, default=50.0,
                    help="gate: p99 of a mesh mode minus no-mesh p99 at the same rate")
    group.addoption("--perf-max-error-rate", type=float, default=0.01,
                    help="gate: failed requests / requests, per step")
    group.addoption("--perf-min-throughput-ratio", type=float, default=None,
                    help="gate: mesh max throughput as a fraction of no-mesh (off by default: "
                         "noisy on a shared machine)")


@pytest.fixture(scope="session")
def perf_gates(request: pytest.FixtureRequest) -> Gates:
    opt = request.config.getoption
    return Gates(max_p99_overhead_ms=opt("--perf-max-p99-overhead-ms"),
                 max_error_rate=opt("--perf-max-error-rate"),
                 min_throughput_ratio=opt("--perf-min-throughput-ratio"))
