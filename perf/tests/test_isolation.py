"""gevent must never be imported into the test process (it monkey-patches it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_runner_side_modules_do_not_import_locust_or_gevent() -> None:
    modules = ["perf.cli", "perf.runner", "perf.session", "perf.report_html", "perf.compare",
               "perf.gates", "perf.component_samplers", "perf.process_usage",
               "perf.sampling_loop", "perf.loadgen", "perf.loadgen.agent", "perf.loadgen.echo",
               "perf.conftest"]
    code = (f"import {', '.join(modules)}, sys\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('gevent', 'locust'))\n"
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_this_process_has_no_gevent() -> None:
    assert "gevent" not in sys.modules and "locust" not in sys.modules
