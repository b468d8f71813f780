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
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

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


def junit_outcomes(report_dir: Path) -> dict[str, tuple[str, str]]:
    """``Class::test[param]`` (or ``test[param]``) -> (outcome, message) from junit.xml."""
    root = ElementTree.parse(report_dir / "junit.xml").getroot()
    outcomes: dict[str, tuple[str, str]] = {}
    for case in root.iter("testcase"):
        owner = case.get("classname", "").rsplit(".", 1)[-1]
        name = f"{owner}::{case.get('name')}" if owner[:1].isupper() else str(case.get("name"))
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.get("message", "")
                break
        outcomes[name] = outcome, message
    return outcomes


@dataclass(frozen=True)
class Caught:
    """How the suite catches one broken variant: running the tests ``expression``
    selects, ``fail`` must fail, each by its own check; ``passes`` must pass (showing
    which step of a scenario is the one that catches it); ``fail_fast`` must fail at
    once, because a canary they rely on was never enforced earlier in the run."""

    expression: str
    fail: tuple[str, ...]
    passes: tuple[str, ...] = ()
    fail_fast: tuple[str, ...] = ()


CAUGHT_BY = {
    "ztunnel-ignores-deny": Caught(
        "test_l4_policy_matrix and (deny-principal or deny-port)",
        ("test_l4_policy_matrix[deny-principal]",),
        fail_fast=("test_l4_policy_matrix[deny-port]",)),
    "ztunnel-enrols-nothing": Caught(
        "TestWalkthroughToday or test_traffic_between_enrolled_pods "
        "or test_a_client_leaving_the_mesh or test_use_waypoint_naming",
        ("TestWalkthroughToday::test_step5_enroll_the_namespace",
         "test_traffic_between_enrolled_pods_is_mutual_tls_on_the_wire",
         "test_a_client_leaving_the_mesh_loses_its_identity_and_regains_it",
         "test_use_waypoint_naming_a_missing_waypoint_keeps_l4_working"),
        ("TestWalkthroughToday::test_step4_deploy_bookinfo_and_clients",)),
    "ztunnel-bypassed": Caught(
        "TestWalkthroughToday or test_traffic_between_enrolled_pods",
        ("TestWalkthroughToday::test_step6_send_traffic",
         "test_traffic_between_enrolled_pods_is_mutual_tls_on_the_wire"),
        ("TestWalkthroughToday::test_step5_enroll_the_namespace",)),
    "ztunnel-falls-through": Caught(
        "test_a_service_whose_waypoint_has_no_ready_pod",
        ("test_a_service_whose_waypoint_has_no_ready_pod_is_not_reached_around_it",)),
    "ztunnel-exact-as-prefix": Caught("test_l4_policy_matrix and principal-exact",
                                      ("test_l4_policy_matrix[principal-exact]",)),
    "ztunnel-ignores-selectors": Caught(
        "test_l4_policy_scope and selector-needs-every-label",
        ("test_l4_policy_scope[selector-needs-every-label]",)),
    "ztunnel-keeps-open-connections": Caught(
        "test_a_connection_open_before_a_deny",
        ("test_a_connection_open_before_a_deny_is_closed_once_it_is_in_force",)),
    "ztunnel-takes-plaintext-hbone": Caught(
        "test_plaintext_to_the_hbone_port",
        ("test_plaintext_to_the_hbone_port_never_reaches_the_application",)),
    "ztunnel-forgets-policies-offline": Caught(
        "test_the_control_plane_scaled_to_zero",
        ("test_the_control_plane_scaled_to_zero_and_back",)),
    "ztunnel-tunnels-anywhere": Caught(
        "test_hbone_tunnels_only",
        ("test_hbone_tunnels_only_to_the_pods_own_serving_ports",)),
    "ztunnel-uncaptures-on-exit": Caught(
        "test_the_servers_ztunnel_deleted",
        ("test_the_servers_ztunnel_deleted_under_traffic",)),
    "waypoint-swaps-weights": Caught("test_virtual_service_weights_with_subsets",
                                     ("test_virtual_service_weights_with_subsets",)),
    "waypoint-allows-all": Caught(
        "TestWalkthroughToday",
        ("TestWalkthroughToday::test_step8_waypoint_and_l7_authorization",),
        ("TestWalkthroughToday::test_step7_l4_authorization",)),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_suite_fails_a_broken_implementation(tmp_path, variant):
    component, _ = VARIANTS[variant]
    caught = CAUGHT_BY[variant]
    proc, doc = run_suite(tmp_path, "-k", caught.expression,
                          images={component: image(variant)})
    failed = all_failed_tests(doc)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert doc["result"] == "failure", doc["result"]
    outcomes = junit_outcomes(tmp_path / "reports")
    for name in (*caught.fail, *caught.fail_fast):
        assert any(name in f for f in failed), (name, failed, proc.stdout[-3000:])
    for name in caught.fail:  # each by its own check, not stopped by an earlier one
        assert "not run:" not in outcomes[name][1], (name, outcomes[name])
    for name in caught.passes:
        assert outcomes.get(name, ("absent",))[0] == "passed", (name, outcomes)
    for name in caught.fail_fast:
        # the reason names the canary that timed out (after the self-test's 10 s)
        reason = outcomes[name][1]
        assert "did not converge earlier in this run" in reason, (name, reason)
        assert "never enforced" in reason and "timed out after 10s" in reason, (name, reason)


def test_the_unbroken_reference_passes_the_same_selection(tmp_path):
    """The control: the selections above pass against the shipped implementation, so
    the failures are the broken builds' doing, not the selection's; on this cluster of
    two nodes nothing is skipped (the wire tests pin their pods to different nodes)."""
    expression = " or ".join(f"({c.expression})" for c in CAUGHT_BY.values())
    proc, doc = run_suite(tmp_path, "-k", expression)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert all_failed_tests(doc) == []
    outcomes = junit_outcomes(tmp_path / "reports")
    assert "test_traffic_between_enrolled_pods_is_mutual_tls_on_the_wire" in outcomes, outcomes
    skipped = {n: m for n, (o, m) in outcomes.items() if o != "passed"}
    assert skipped == {}, skipped


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
