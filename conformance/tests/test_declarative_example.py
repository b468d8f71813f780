"""The declarative adapter, proven by its worked example.

``conformance/adapters/examples/reference-declarative.yaml`` installs the project's
reference implementation through plain manifests and a waypoint Gateway recipe per
API flavour, as a third party describes its own mesh (docs/declarative-adapter.md).
Two things are shown here:

- without a cluster, that the example says what the built-in ``reference`` adapter
  does: the same manifests in the same order, the same waypoint Gateways (both
  flavours) and the same condition waited on, the same metrics, enrollment label, root
  namespace, version and features;
- on its own local cluster, that the whole suite passes through it, run as the main
  job runs it (``conformance.flake.MAIN_JOB``) with ``--implementation`` naming the
  YAML, read from the reports it wrote: every test ran and passed, every feature some
  test needs was exercised, and every profile's verdict is success.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from conformance.adapters import load_adapter
from conformance.adapters.base import FLAVOUR_2022, FLAVOUR_TODAY
from conformance.adapters.declarative import DeclarativeAdapter
from conformance.adapters.reference import ReferenceAdapter
from conformance.flake import MAIN_JOB
from profiles import features as F
from reports.conformance import all_failed_tests

from .test_adapters import FakeCluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "conformance" / "adapters" / "examples" / "reference-declarative.yaml"
RUN_TIMEOUT_S = 1500


def example() -> DeclarativeAdapter:
    adapter = load_adapter(str(EXAMPLE))
    assert isinstance(adapter, DeclarativeAdapter)
    return adapter


# -- the example says what the reference adapter does (no cluster) -------------------------


def test_the_example_installs_the_reference_manifests_in_the_reference_order() -> None:
    adapter, reference = example(), ReferenceAdapter()
    assert adapter.check_available(FakeCluster()) is None  # the relative paths resolve
    assert [p.resolve() for p in adapter.config.install.manifests] == reference.manifests
    cluster = FakeCluster()
    adapter.uninstall(cluster)  # the default uninstall: the same manifests, last first
    assert [a.resolve() for _, a in cluster.calls] == list(reversed(reference.manifests))
    assert adapter.config.install.wait_namespaces == ("istio-system",)


def test_the_example_claims_what_the_reference_claims() -> None:
    adapter, reference = example(), ReferenceAdapter()
    assert adapter.features() == reference.features()
    assert F.WALKTHROUGH_2022 in adapter.features()
    assert adapter.api_flavours() == reference.api_flavours() == {FLAVOUR_TODAY, FLAVOUR_2022}
    assert adapter.version() == reference.version()  # read from reference-impl's pyproject
    assert adapter.metrics_locations() == reference.metrics_locations()
    assert adapter.enroll_labels() == reference.enroll_labels()
    assert adapter.root_namespace() == reference.root_namespace()


@pytest.mark.parametrize(("flavour", "for_"), [(FLAVOUR_TODAY, "service"),
                                               (FLAVOUR_TODAY, "workload"),
                                               (FLAVOUR_2022, "service")])
def test_the_example_makes_the_reference_adapters_waypoint(flavour: str, for_: str) -> None:
    """The same Gateway applied, the same condition waited on, the same proxy named, for
    each flavour from its own recipe."""
    made = {}
    for name, adapter in (("example", example()), ("reference", ReferenceAdapter())):
        cluster = FakeCluster()  # its wait checks the predicate is Programmed=True
        info = adapter.add_waypoint(cluster, "ns", "wp", flavour=flavour,  # type: ignore[arg-type]
                                    for_=for_, service_account="sa")
        made[name] = info, cluster.calls
    assert made["example"] == made["reference"]


# -- the whole suite through the example (a local cluster of its own) ----------------------


@dataclass(frozen=True)
class Case:
    name: str
    outcome: str  # passed, failure, error or skipped
    message: str
    features: frozenset[str]


def junit_cases(path: Path) -> list[Case]:
    """Every test of the run's junit.xml with the features it needs (a property)."""
    cases = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value", "") for p in case.iter("property")}
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome, message = child.tag, child.get("message", "")
                break
        owner = case.get("classname", "").rsplit(".", 1)[-1]
        test = str(case.get("name")).partition("@")[0]  # xdist's "@<group>" suffix
        name = f"{owner}::{test}" if owner[:1].isupper() else test
        cases.append(Case(name, outcome, message,
                          frozenset(f for f in props.get("features", "").split(",") if f)))
    return cases


@pytest.mark.slow
# One mesh cluster at a time: two on two cores starve each other.
@pytest.mark.xdist_group("mesh-cluster")
@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_the_whole_suite_passes_through_the_example(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", *MAIN_JOB, "-p", "no:cacheprovider", "-q",
           "--implementation", str(EXAMPLE.relative_to(REPO)), "--report-dir", str(reports)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    check_run(proc.returncode, proc.stdout, proc.stderr, reports)


def check_run(returncode: int, stdout: str, stderr: str, reports: Path) -> None:
    """What the run through the example must show, read from what it printed and wrote."""
    output = stdout[-4000:] + stderr[-2000:]
    assert (reports / "conformance-report.yaml").is_file(), f"no report; the run printed:\n{output}"
    doc = yaml.safe_load((reports / "conformance-report.yaml").read_text())
    claimed = example().features()

    # the run: every test ran and passed
    assert all_failed_tests(doc) == [], output
    assert returncode == 0, output
    assert doc["exitStatus"] == 0
    assert doc["result"] == "success", doc["exitReason"]
    assert stdout.strip().splitlines()[-1] == f"ambient: {doc['exitReason']}"
    assert doc["implementation"]["project"] == "reference-declarative"
    assert doc["implementation"]["version"] == ReferenceAdapter().version()
    assert set(doc["implementation"]["flavours"]) == {FLAVOUR_TODAY, FLAVOUR_2022}
    assert set(doc["supportedFeatures"]) == claimed
    assert not doc.get("unsupportedFeatures")

    cases = junit_cases(reports / "junit.xml")
    assert cases, output
    assert [c for c in cases if c.outcome != "passed"] == [], output
    assert doc["exitReason"] == f"exit 0: {len(cases)} tests ran and passed", doc
    declared = frozenset().union(*(c.features for c in cases))
    assert declared <= claimed
    assert declared == frozenset().union(*(c.features for c in cases if c.outcome == "passed"))

    # the profiles: every part passed in full (a profile without extended features has
    # no extended part to pass: it says "skipped", nothing was there to claim)
    for profile in doc["profiles"]:
        for part in ("core", "extended"):
            if part == "extended" and not F.PROFILES[profile["name"]].extended \
                    and not profile[part]["statistics"]["Passed"]:
                assert profile[part]["result"] == "skipped", profile
                continue
            assert profile[part]["result"] == "success", profile
            stats = profile[part]["statistics"]
            assert stats["Passed"] > 0 and stats["Skipped"] == stats["Failed"] == 0, profile
