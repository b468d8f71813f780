"""The suite's strength: it must fail deliberately broken implementations, and report
an exempted feature as unsupported with an overall ``partial``.

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

from .broken import VARIANTS, image

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run_suite(tmp_path: Path, *args: str, images: dict[str, str] | None = None,
              ) -> tuple[subprocess.CompletedProcess[str], dict]:
    report_dir = tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", "conformance/suite", "-p", "no:cacheprovider",
           "-q", "-n", "0", "--report-dir", str(report_dir), "--convergence-timeout", "10",
           *args]
    if images:
        config = tmp_path / "adapter.yaml"
        config.write_text(yaml.safe_dump({"images": images}))
        cmd += ["--adapter-config", str(config)]
    env = {**os.environ, "AMBIENT_HARNESS_IMAGE_PLUGINS": "conformance.tests.broken:register"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    report = report_dir / "conformance-report.yaml"
    assert report.is_file(), f"no conformance report; the run printed:\n{proc.stdout[-3000:]}"
    return proc, yaml.safe_load(report.read_text())


# variant -> the tests that must fail it (a -k expression and the names expected failed)
CAUGHT_BY = {
    "ztunnel-ignores-deny": ("test_l4_policy_matrix and deny-principal",
                             ["test_l4_policy_matrix[deny-principal]"]),
    "ztunnel-exact-as-prefix": ("test_l4_policy_matrix and principal-exact",
                                ["test_l4_policy_matrix[principal-exact]"]),
    "ztunnel-ignores-selectors": ("test_l4_policy_scope and selector-needs-every-label",
                                  ["test_l4_policy_scope[selector-needs-every-label]"]),
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


# One suite run holding every variant's selection (a walkthrough, a traffic split and
# two L4 rounds), so it may take as long as the subprocess is allowed to.
@pytest.mark.timeout(600)
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
    for name in ("junit.xml", "report.html", "conformance-report.yaml"):
        assert (tmp_path / "reports" / name).is_file(), name
    junit = (tmp_path / "reports" / "junit.xml").read_text()
    assert 'name="features"' in junit


def test_kind_without_docker_skips_every_test_saying_why(tmp_path):
    from clusters.kind import KindCluster

    reason = KindCluster.available()
    if reason is None:
        pytest.skip("kind and Docker are available here: nothing to show")
    proc, doc = run_suite(tmp_path, "--cluster", "kind", "-k", "test_step1_3_install", "-rs")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "cannot run here" in proc.stdout and reason.split(":")[0] in proc.stdout
    assert doc["result"] != "success"  # nothing ran: never reported as conformant


def test_a_misspelt_feature_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "conformance/suite", "-p",
                           "no:cacheprovider", "--exempt-features", "l4-polcy",
                           "--report-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4  # pytest's usage error, before any cluster is made
    assert "unknown feature(s) l4-polcy" in proc.stderr
