"""A failed suite run on kind leaves the cluster's logs beside its reports, linked from the
HTML report; and the suite's options live with pytest-kind's own pytest plugin.

kind's nodes, with their journals and kubelet and container logs, vanish when the
cluster is deleted at the end of the run, so the one chance to keep them is at session
end, before teardown.  This machine has no Docker: kind is the substitute binary of
``clusters/tests/test_kind_provider.py``, and a ``docker`` that answers ``info``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusters.kind import KindCluster
from clusters.tests.test_kind_provider import FakeKind
from conformance.plugin import (
    KIND_LOGS,
    cluster_logs_html,
    export_cluster_logs,
)

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKind:
    from clusters import kubectl_cluster

    fake = FakeKind(tmp_path)
    monkeypatch.setattr(kubectl_cluster, "kubectl_binary", lambda: str(fake.kubectl))
    return fake


def _cluster(kind: FakeKind, tmp_path: Path) -> KindCluster:
    return KindCluster("t", kind_binary=kind.binary, root=tmp_path / "state")


def test_a_failed_run_exports_the_logs_into_the_report_folder(kind, tmp_path):
    dest = tmp_path / "reports" / KIND_LOGS
    logs, problem = export_cluster_logs(_cluster(kind, tmp_path), failed=True, dest=dest)
    assert (logs, problem) == (dest, None)
    assert kind.calls() == [["export", "logs", str(dest), "--name", "t"]]
    assert (dest / "kind-version.txt").is_file()


def test_a_passing_run_exports_nothing_and_drops_an_earlier_runs_logs(kind, tmp_path):
    dest = tmp_path / "reports" / KIND_LOGS
    (dest / "old").mkdir(parents=True)
    assert export_cluster_logs(_cluster(kind, tmp_path), failed=False, dest=dest) == (None, None)
    assert kind.calls() == []
    assert not dest.exists()


def test_without_a_cluster_nothing_is_exported(tmp_path):
    # kind unavailable here (no Docker): every test skipped, no cluster to ask
    dest = tmp_path / KIND_LOGS
    dest.mkdir()
    assert export_cluster_logs(None, failed=True, dest=dest) == (None, None)
    assert not dest.exists()


def test_a_failed_export_is_reported_not_raised(kind, tmp_path):
    kind.fail("export", 'ERROR: unknown cluster "t"\n')
    logs, problem = export_cluster_logs(_cluster(kind, tmp_path), failed=True,
                                        dest=tmp_path / KIND_LOGS)
    assert logs is None
    assert problem is not None
    assert problem.startswith("exporting the kind cluster's logs failed: `kind export logs ")
    assert "unknown cluster" in problem and "is running" in problem


def test_the_html_link_is_relative_to_the_report_and_escaped(tmp_path):
    html = cluster_logs_html(tmp_path / "out" / KIND_LOGS, tmp_path / "out" / "report.html")
    assert '<a href="kind-logs/">kind-logs/</a>' in html
    odd = cluster_logs_html(tmp_path / "a&b <c>" / "logs", tmp_path / "html" / "r.html")
    assert 'href="../a%26b%20%3Cc%3E/logs/"' in odd
    assert ">../a&amp;b &lt;c&gt;/logs/</a>" in odd


def test_the_suite_parses_its_options_beside_pytest_kinds_plugin(tmp_path):
    """pytest-kind, installed for the kind provider, brings a pytest plugin that also
    defines --kubeconfig and --keep-cluster; the project's addopts leave it out
    (``-p no:pytest-kind``), so the suite's options parse."""
    pytest.importorskip("pytest_kind", reason="pytest-kind is not installed here")
    cmd = [sys.executable, "-m", "pytest", "conformance/suite", "-p", "no:cacheprovider",
           "--co", "-q", "--keep-cluster", "--kubeconfig", str(tmp_path / "kc"),
           "--report-dir", str(tmp_path / "reports")]
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tests collected" in proc.stdout


@pytest.mark.slow
def test_a_failed_suite_run_on_kind_exports_the_logs_once_and_links_them(kind, tmp_path):
    """As a user runs it: ``pytest conformance/suite --cluster kind -n 2``.  The fake
    cluster never gets Ready nodes (its API address refuses connections), so set-up
    fails and so does every test; the logs are exported once, by the controller, before
    teardown deletes the cluster, and the HTML report links them."""
    docker = kind.binary.parent / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    reports = tmp_path / "reports"
    env = {**os.environ, "PATH": f"{kind.binary.parent}{os.pathsep}{os.environ['PATH']}",
           "AMBIENT_HARNESS_STATE": str(tmp_path / "state")}
    env.pop("KIND_EXPERIMENTAL_PROVIDER", None)
    cmd = [sys.executable, "-m", "pytest", "conformance/suite", "-p", "no:cacheprovider",
           "-q", "-n", "2", "--cluster", "kind", "--report-dir", str(reports),
           "-k", "TestWalkthroughToday and (step1_3 or step4)"]
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=600)
    output = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 6, output  # the cluster could not run (reports/gate.py)
    calls = kind.calls()
    [create] = [c for c in calls if c[:2] == ["create", "cluster"]]
    name = create[2].removeprefix("--name=")
    exports = [c for c in calls if c[:2] == ["export", "logs"]]
    assert exports == [["export", "logs", str(reports / KIND_LOGS), "--name", name]], output
    delete = next(i for i, c in enumerate(calls) if c[:2] == ["delete", "cluster"])
    assert calls.index(exports[0]) < delete  # before teardown took the nodes away
    assert (reports / KIND_LOGS / "kind-version.txt").is_file()
    assert f"kind cluster logs: {reports / KIND_LOGS}" in proc.stdout
    assert '<a href="kind-logs/">kind-logs/</a>' in (reports / "report.html").read_text()
