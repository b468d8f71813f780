"""The suite's strength: it must fail deliberately broken implementations, report an
exempted feature as unsupported with an overall ``partial``, and never exit 0 when it
could not run (no cluster, no test run).

Each case runs ``pytest conformance/suite`` in a subprocess exactly as a user would,
on its own local cluster, with the reference implementation installed through the
``reference`` adapter's ``images`` option so one component is a broken build
(conformance/tests/broken/), and then reads the reports it wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reports.conformance import all_failed_tests
from reports.gate import EXIT_NO_TEST_RAN, EXIT_NOT_RUNNABLE

from .broken import VARIANTS, image

# Each case runs a suite with a cluster of its own: about a minute on an idle machine,
# over five with the load average near 30.  The bounds only stop a hang.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 1500


def run_suite(tmp_path: Path, *args: str, images: dict[str, str] | None = None,
              env: dict[str, str] | None = None,
              ) -> tuple[subprocess.CompletedProcess[str], dict]:
    report_dir = tmp_path / "reports"
    workers = [] if "-n" in args else ["-n", "0"]
    cmd = [sys.executable, "-m", "pytest", "conformance/suite", "-p", "no:cacheprovider",
           "-q", *workers, "--report-dir", str(report_dir), "--convergence-timeout", "10",
           *args]
    if images:
        config = tmp_path / "adapter.yaml"
        config.write_text(yaml.safe_dump({"images": images}))
        cmd += ["--adapter-config", str(config)]
    env = {**os.environ, "AMBIENT_HARNESS_IMAGE_PLUGINS": "conformance.tests.broken:register",
           **(env or {})}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    report = report_dir / "conformance-report.yaml"
    assert report.is_file(), f"no conformance report; the run printed:\n{proc.stdout[-3000:]}"
    return proc, yaml.safe_load(report.read_text())


# variant -> the tests that must fail it (a -k expression and the names expected failed)
CAUGHT_BY = {
    "ztunnel-ignores-deny": ("test_l4_policy_matrix and deny-principal",
                             ["test_l4_policy_matrix[deny-principal]"]),
    "waypoint-swaps-weights": ("test_virtual_service_weights_with_subsets",
                               ["test_virtual_service_weights_with_subsets"]),
    "waypoint-allows-all": ("TestWalkthroughToday",
                            ["TestWalkthroughToday::test_step8_waypoint_and_l7_authorization"]),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_suite_fails_a_broken_implementation(tmp_path, variant):
    component, _ = VARIANTS[variant]
    expression, must_fail = CAUGHT_BY[variant]
    proc, doc = run_suite(tmp_path, "-k", expression, images={component: image(variant)})
    failed = all_failed_tests(doc)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert doc["result"] == "failure", doc["result"]
    for name in must_fail:
        assert any(name in f for f in failed), (name, failed, proc.stdout[-3000:])


def test_the_unbroken_reference_passes_the_same_selection(tmp_path):
    """The control: the selections above pass against the shipped implementation, so
    the failures are the broken builds' doing, not the selection's."""
    expression = " or ".join(f"({e})" for e, _ in CAUGHT_BY.values())
    proc, doc = run_suite(tmp_path, "-k", expression)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all_failed_tests(doc) == []


def test_an_exempt_feature_is_reported_unsupported_and_partial(tmp_path):
    proc, doc = run_suite(tmp_path, "--exempt-features", "l4-policy", "-k",
                          "test_l4_policy_matrix and allow-nothing or test_step1_3_install")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert doc["result"] == "partial"
    assert "l4-policy" in doc["unsupportedFeatures"] and "l4-policy" in doc["exemptFeatures"]
    [l4] = [p for p in doc["profiles"] if p["name"] == "AMBIENT-L4"]
    assert any("test_l4_policy_matrix[allow-nothing]" in t
               for t in l4["core"]["skippedTests"]), l4
    assert "PARTIAL" in proc.stdout  # the summary at the end of the run
    # ... and the last line says why a partial result still exits 0
    assert proc.stdout.strip().splitlines()[-1].startswith(
        "ambient: exit 0: PARTIAL only by choice"), proc.stdout[-3000:]
    assert doc["exitStatus"] == 0
    for name in ("junit.xml", "report.html", "conformance-report.yaml"):
        assert (tmp_path / "reports" / name).is_file(), name
    junit = (tmp_path / "reports" / "junit.xml").read_text()
    assert 'name="features"' in junit


def test_kind_without_docker_is_never_a_pass(tmp_path):
    from clusters.kind import KindCluster

    reason = KindCluster.available()
    if reason is None:
        pytest.skip("kind and Docker are available here: nothing to show")
    proc, doc = run_suite(tmp_path, "--cluster", "kind", "-k", "test_step1_3_install", "-rs")
    assert proc.returncode == EXIT_NOT_RUNNABLE, proc.stdout[-3000:]
    assert "cannot run here" in proc.stdout and reason.split(":")[0] in proc.stdout
    assert doc["result"] != "success"  # nothing ran: never reported as conformant
    assert doc["exitStatus"] == EXIT_NOT_RUNNABLE


def _path_without(tmp_path: Path, *commands: str) -> str:
    """A PATH with every command of this machine's PATH but ``commands``: a machine
    where those packages are not installed, without uninstalling anything."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or not Path(folder).is_dir():
            continue
        for entry in Path(folder).iterdir():
            target = bin_dir / entry.name
            if entry.name not in commands and not target.exists() and os.access(entry, os.X_OK):
                target.symlink_to(entry)
    return str(bin_dir)


def test_a_local_cluster_that_cannot_start_fails_the_run_saying_why(tmp_path):
    """The issue's fresh Debian machine without nftables: every test used to skip and
    the main job exited 0.  It must exit non-zero and end with the reason."""
    path = _path_without(tmp_path, "nft")
    proc, doc = run_suite(tmp_path, "-n", "2", env={"PATH": path})
    assert proc.returncode == EXIT_NOT_RUNNABLE, proc.stdout[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f"ambient: exit {EXIT_NOT_RUNNABLE}: the cluster or the "
                           "implementation could not run"), last
    assert "need nft" in last, last
    assert doc["result"] != "success" and doc["exitStatus"] == EXIT_NOT_RUNNABLE


def test_a_cluster_that_does_not_come_up_fails_the_run(tmp_path):
    proc, doc = run_suite(tmp_path, "--cluster", "existing", "--kubeconfig",
                          str(tmp_path / "missing-kubeconfig"), "-k", "test_step1_3_install")
    assert proc.returncode == EXIT_NOT_RUNNABLE, proc.stdout[-3000:]
    assert "missing-kubeconfig does not exist" in proc.stdout.strip().splitlines()[-1]
    assert doc["exitStatus"] == EXIT_NOT_RUNNABLE


def test_a_run_where_no_test_ran_is_never_a_pass(tmp_path):
    """The selected tests all lie outside the chosen profile: the cluster and the mesh
    came up, and nothing was demonstrated."""
    proc, doc = run_suite(tmp_path, "--profiles", "AMBIENT-L7", "-k",
                          "test_l4_policy_matrix and allow-nothing")
    assert proc.returncode == EXIT_NO_TEST_RAN, proc.stdout[-3000:]
    assert "no test ran" in proc.stdout.strip().splitlines()[-1]
    assert doc["exitStatus"] == EXIT_NO_TEST_RAN


def test_a_misspelt_feature_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "conformance/suite", "-p",
                           "no:cacheprovider", "--exempt-features", "l4-polcy",
                           "--report-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4  # pytest's usage error, before any cluster is made
    assert "unknown feature(s) l4-polcy" in proc.stderr
