"""The live short run: local cluster, reference implementation, three modes, SLO gates.

Two runs, each on a fresh cluster brought up and torn down inside the test: the
short profile, which must measure every mode and be judged by the configured gates
(``--perf-max-p99-overhead-ms``, ``--perf-max-error-rate``,
``--perf-min-throughput-ratio``), and the same runner with a real slowdown injected
into the L4 mode (the server delays every request of that mode, on the wire), which
the gates must fail.  Both write JSON and HTML to ``--perf-out``
(``reports/out/perf/`` by default).

Whether the short run *meets* the SLOs is a measurement of this machine, not a
property of the code: on a busy shared machine the L7 p99 overhead has been seen at
67 ms against a 50 ms gate.  So it is recorded (the verdict is in the outputs and a
test property), never asserted; the gates themselves are proven here by the
injected slowdown, and deterministically, passing and failing, on recorded results
(``test_recorded.py``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from perf.gates import Gates, evaluate
from perf.plan import Fault, Faults
from perf.profiles import SHORT, ScenarioLoad, get_profile
from perf.runner import RunOptions
from perf.session import run_local, write_outputs

# A bound that only stops a hang: each run takes 2-3 minutes with the load average near
# 30 (a cluster, a mesh, three modes).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("perf-live"),
              pytest.mark.timeout(1200)]

INJECTED_DELAY_FACTOR = 5
"""The injected delay is this many times the p99-overhead gate, so that only a no-mesh
p99 of several gates' worth (hundreds of ms on loopback) could hide it."""


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the local cluster's pods need root (network namespaces)")


def _write(doc: dict, gates: Gates, out: Path, stem: str) -> None:
    write_outputs(doc, out, stem, evaluate(doc, gates))


def test_short_profile_measures_every_mode_and_is_judged_by_the_gates(
        request: pytest.FixtureRequest, perf_gates: Gates, record_property: object) -> None:
    opt = request.config.getoption
    t0 = time.monotonic()
    doc = run_local(RunOptions(profile=get_profile(opt("--perf-profile"))),
                    opt("--perf-adapter"))
    wall = time.monotonic() - t0
    _write(doc, perf_gates, Path(opt("--perf-out")), f"perf-{doc['labels']['profile']}")
    record_property("perf_wall_time_s", round(wall, 1))  # type: ignore[operator]
    modes = {m["mode"]: m for m in doc["scenarios"][0]["modes"]}
    assert set(modes) == {"none", "l4", "l7"}
    assert all(m["status"] == "ran" for m in modes.values()), [m["reason"] for m in
                                                               modes.values()]
    zt = modes["l4"]["steps"][0]["components"]["ztunnel"]
    assert zt["available"] and zt["pods"] == 2 and zt["cpu_seconds"] > 0
    assert modes["l7"]["steps"][0]["components"]["waypoint"]["available"]
    report = evaluate(doc, perf_gates)
    # Judged, not asserted (see the module docstring): the verdict goes to the outputs.
    assert report.checks > 0, report.text()
    record_property("slo_gates", report.text())  # type: ignore[operator]


def test_the_gate_fails_on_an_injected_slowdown(request: pytest.FixtureRequest,
                                               perf_gates: Gates) -> None:
    gate_ms = perf_gates.max_p99_overhead_ms or 50.0
    gates = Gates(max_p99_overhead_ms=gate_ms, max_error_rate=perf_gates.max_error_rate)
    delay = INJECTED_DELAY_FACTOR * gate_ms
    # Enough users that each has twice the delayed request's time, and a longer step
    # than the short profile's so each user sends several: the step stays valid, so it
    # is the latency gate that must catch the delay, not the rate check.
    per_user = min(10.0, 1000 / (2 * (delay + 20)))
    profile = SHORT.replace(loads=(ScenarioLoad("direct", (50.0,), max_probe=False),),
                            modes=("none", "l4"), per_user_rps=per_user, step_s=4.0)
    doc = run_local(RunOptions(profile=profile, faults=Faults({"l4": Fault(delay)})),
                    request.config.getoption("--perf-adapter"))
    _write(doc, gates, Path(request.config.getoption("--perf-out")), "perf-injected-slowdown")
    l4 = doc["scenarios"][0]["modes"][1]
    assert l4["fault"] == {"server_delay_ms": delay}
    assert l4["steps"][0]["valid"], l4["steps"][0]["invalid_reasons"]
    assert l4["steps"][0]["latencies_ms"]["p50"] >= delay
    report = evaluate(doc, gates)
    assert not report.passed
    assert any(f.startswith("direct/l4 at 50 req/s: p99 overhead") for f in report.failures), \
        report.text()


def test_the_real_ztunnel_is_measured_on_the_same_pods(request: pytest.FixtureRequest,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference's modes, then real Istio's ztunnel (built from source, named by
    ``AMBIENT_HARNESS_ISTIO_BIN``) on the same pods, against one no-mesh baseline.

    Istio's L4 must have been measured through its ztunnel: the namespace announced
    captured (istio-cni's ``ambient.istio.io/redirection`` annotation, istio/istio
    ``cni/pkg/nodeagent``) and both ztunnel pods busy.  Its L7 mode is a skip with
    the reason: a build from source has no Envoy for a waypoint.
    """
    from clusters.local.images import istio_build

    try:
        build = istio_build.find()
    except istio_build.IstioBuildMissing as exc:
        pytest.skip(str(exc))
    monkeypatch.setenv("PATH", f"{build}{os.pathsep}{os.environ.get('PATH', '')}")
    mapping = istio_build.write_mapping(build, tmp_path / "istio-images.yaml")
    profile = SHORT.replace(loads=(ScenarioLoad("direct", (50.0,)),))
    doc = run_local(RunOptions(profile=profile), ["reference", "istio"],
                    image_executables=[str(mapping)])
    _write(doc, Gates(max_error_rate=0.01), Path(request.config.getoption("--perf-out")),
           "perf-reference-and-istio")
    got = {m["mode"]: m for m in doc["scenarios"][0]["modes"]}
    assert list(got) == ["none", "l4", "l7", "l4@istio", "l7@istio"]
    assert [got[m]["status"] for m in ("none", "l4", "l7", "l4@istio")] == ["ran"] * 4, \
        {m: r["reason"] for m, r in got.items()}
    istio = got["l4@istio"]
    assert istio["implementation"] == "istio" and not istio["warnings"], istio["warnings"]
    zt = istio["steps"][0]["components"]["ztunnel"]
    assert zt["available"] and zt["pods"] == 2 and zt["cpu_seconds"] > 0
    assert istio["steps"][0]["overhead_ms"] is not None  # against the shared baseline
    assert got["l7@istio"]["status"] == "skipped" and "Envoy" in got["l7@istio"]["reason"]
    versions = {i["name"]: i["version"] for i in doc["mesh_config"]["implementations"]}
    assert versions["istio"] and versions["reference"]
