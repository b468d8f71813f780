"""The conformance suite's pytest plugin: options, features, the shared cluster, reports.

Loaded by ``conformance/suite/conftest.py``, so ``pytest conformance/suite`` is the
whole interface.  One cluster with one mesh serves every test of a run: the
controlling process (pytest itself, or xdist's controller) brings the cluster up
and installs the implementation once; xdist workers attach to it; tests own their
namespaces.  The controller also turns every test's outcome into the reports:
JUnit XML (pytest's own writer, statistics as properties), a self-contained HTML
report (pytest-html) and the conformance report (YAML), plus a summary at the end.

Features decide what runs: a test needs the features of its ``feature`` marks; a
test needing a feature the implementation does not claim, or one the user exempted,
is skipped and reported as unsupported, never passed.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, NoReturn

import pytest

from clusters.provider import ClusterError, ClusterProvider
from profiles import features as F
from reports.gate import Verdict, decide
from reports.model import (
    SKIP_EXEMPT,
    SKIP_NAMED,
    SKIP_NOT_SELECTED,
    SKIP_OTHER,
    SKIP_UNAVAILABLE,
    SKIP_UNSUPPORTED,
    RunInfo,
    TestRecord,
)

from . import exclusive
from .adapters import AdapterError, AdapterUnavailable, MeshAdapter, load_adapter
from .adapters.base import FLAVOUR_2022, FLAVOUR_TODAY
from .canary_memory import CanaryMemory
from .waiting import set_default_timeout

REPO_ROOT = Path(__file__).resolve().parents[1]
SUITE_VERSION = "0.1.0"
CLUSTER_KINDS = ("local", "kind", "existing")

SUITE_KEY = pytest.StashKey["Suite"]()
# The folder of the report directory that a failed kind run's cluster logs go to.
KIND_LOGS = "kind-logs"


# -- options ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("ambient", "ambient mesh conformance")
    g.addoption("--cluster", choices=CLUSTER_KINDS, default="local",
                help="cluster provider: the embedded local cluster (default), kind (needs "
                     "Docker and kind), or an existing cluster from a kubeconfig")
    g.addoption("--kubeconfig", default=None, help="kubeconfig of --cluster=existing")
    g.addoption("--context", default=None, help="kubeconfig context of --cluster=existing")
    g.addoption("--nodes", type=int, default=2, help="nodes of a local or kind cluster")
    g.addoption("--image-exec", action="append", default=[], metavar="IMAGE=EXE|FILE",
                help="local cluster: run an image as an executable of this machine, "
                     "'IMAGE=/path/to/exe' or a YAML/JSON file of images (repeatable; also "
                     "AMBIENT_HARNESS_IMAGE_EXEC)")
    g.addoption("--keep-cluster", action="store_true",
                help="leave a local/kind cluster running after the run (debugging)")
    g.addoption("--implementation", "--adapter", dest="implementation", default="reference",
                help="the mesh adapter: 'reference', 'istio', or a declarative adapter YAML")
    g.addoption("--adapter-config", default=None,
                help="YAML file of adapter options (e.g. image overrides for 'reference')")
    g.addoption("--profiles", default="",
                help=f"comma-separated profiles to run (default: all of {', '.join(F.PROFILES)})")
    g.addoption("--supported-features", default="",
                help="claim only these features (default: what the adapter claims)")
    g.addoption("--exempt-features", default="",
                help="features not to test: their tests are skipped and reported unsupported")
    g.addoption("--skip-tests", default="",
                help="comma-separated test names (or name prefixes) to skip")
    g.addoption("--convergence-timeout", type=float, default=60.0,
                help="seconds an implementation may take to put a change in force (default 60)")
    g.addoption("--organization", default="",
                help="who publishes the implementation, for the conformance report")
    g.addoption("--project-url", default="", help="the implementation's URL, for the report")
    g.addoption("--contact", action="append", default=[],
                help="a contact for the report (repeatable)")
    g.addoption("--report-dir", default=str(REPO_ROOT / "reports" / "out"),
                help="folder for junit.xml, report.html and conformance-report.yaml")


# -- the run's state ----------------------------------------------------------------------


@dataclass
class Suite:
    """Everything one process knows about the run."""

    config: pytest.Config
    adapter: MeshAdapter
    claimed: frozenset[str]
    exempt: frozenset[str]
    profiles: list[F.Profile]
    skip_tests: list[str]
    report_dir: Path
    cluster: ClusterProvider | None = None
    owns_cluster: bool = False
    installed: bool = False
    unavailable: str | None = None
    setup_error: str | None = None
    # Claimed features this cluster cannot have, with the reason (adapter.unsupported_on)
    limits: dict[str, str] = field(default_factory=dict)
    cluster_info: dict[str, Any] = field(default_factory=dict)
    records: dict[str, TestRecord] = field(default_factory=dict)
    canaries: CanaryMemory = field(default_factory=CanaryMemory)
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    @property
    def flavours(self) -> frozenset[str]:
        return self.adapter.api_flavours()


def _build_suite(config: pytest.Config) -> Suite:
    opt = config.option
    try:
        adapter = load_adapter(opt.implementation)
        if opt.adapter_config:
            adapter.configure(_read_yaml(Path(opt.adapter_config)))
        supported = F.parse_features(opt.supported_features, option="--supported-features")
        exempt = F.parse_features(opt.exempt_features, option="--exempt-features")
        profiles = F.parse_profiles(opt.profiles, option="--profiles")
    except (AdapterError, F.UnknownName) as exc:
        raise pytest.UsageError(str(exc)) from None
    claimed = adapter.features() & (supported or F.ALL_FEATURES)
    flavours = adapter.api_flavours()
    if FLAVOUR_2022 not in flavours:
        claimed -= {F.WALKTHROUGH_2022}
    if FLAVOUR_TODAY not in flavours:
        claimed -= {F.WALKTHROUGH_TODAY}
    return Suite(config, adapter, frozenset(claimed), exempt, profiles,
                 [t.strip() for t in opt.skip_tests.split(",") if t.strip()],
                 Path(opt.report_dir))


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise AdapterError(f"--adapter-config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AdapterError(f"--adapter-config {path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise AdapterError(f"--adapter-config {path}: expected a mapping of options")
    return doc


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scenario: the class's tests are ordered steps; the first failure stops "
                   "the rest")
    config.addinivalue_line(
        "markers", "needs_component(name): the test applies only to an implementation that "
                   "has this component (a field of MeshAdapter.components())")
    config.addinivalue_line(
        "markers", f"{exclusive.MARKER}: the test breaks the shared mesh (and restores it); "
                   "no other test runs meanwhile (conformance/exclusive.py)")
    config.addinivalue_line(
        "markers", "feature(*names): the conformance features the test needs "
                   f"({', '.join(sorted(F.ALL_FEATURES))})")
    suite = _build_suite(config)
    config.stash[SUITE_KEY] = suite
    set_default_timeout(config.option.convergence_timeout)
    if suite.is_worker:
        return
    suite.canaries = CanaryMemory.for_run()  # shared with the workers; see pytest_unconfigure
    suite.report_dir.mkdir(parents=True, exist_ok=True)
    if not config.option.xmlpath:
        config.option.xmlpath = str(suite.report_dir / "junit.xml")
    if config.pluginmanager.hasplugin("html") and not getattr(config.option, "htmlpath", None):
        config.option.htmlpath = str(suite.report_dir / "report.html")
        config.option.self_contained_html = True
    config.pluginmanager.register(_Recorder(suite), "ambient-recorder")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(suite), "ambient-xdist-hooks")


class _XdistHooks:
    """Hands the controller's cluster to each worker."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["ambient_suite"] = json.dumps({
            "cluster": self.suite.cluster_info, "unavailable": self.suite.unavailable,
            "setup_error": self.suite.setup_error, "limits": self.suite.limits,
            "canaries": str(self.suite.canaries.folder)})


# -- bring-up (controller) and attach (workers) --------------------------------------------


def _write(config: pytest.Config, line: str) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(f"ambient: {line}")
    else:
        print(f"ambient: {line}", file=sys.stderr)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    suite = config.stash[SUITE_KEY]
    if suite.is_worker:
        shared = json.loads(config.workerinput["ambient_suite"])  # type: ignore[attr-defined]
        suite.unavailable, suite.setup_error = shared["unavailable"], shared["setup_error"]
        suite.cluster_info = shared["cluster"]
        _limit(suite, shared["limits"])
        suite.canaries = CanaryMemory(Path(shared["canaries"]))
        if suite.cluster_info:
            suite.cluster = _attach(suite.cluster_info)
        return
    if config.option.collectonly:
        return
    _bring_up(suite)


def _bring_up(suite: Suite) -> None:
    from clusters import choose_provider

    opt = suite.config.option
    reason = choose_provider.unavailable_reason(opt.cluster)
    if reason:
        suite.unavailable = f"cluster provider {opt.cluster!r} cannot run here: {reason}"
        _write(suite.config, suite.unavailable)
        return
    name = f"conformance-{os.getpid()}"
    try:
        t = time.monotonic()
        _write(suite.config, f"bringing up the {opt.cluster} cluster ({opt.nodes} nodes)")
        cluster = choose_provider.make_provider(opt.cluster, name=name, nodes=opt.nodes,
                                       kubeconfig=opt.kubeconfig, context=opt.context,
                                       image_executables=opt.image_exec)
        suite.cluster, suite.owns_cluster = cluster, opt.cluster != "existing"
        if opt.keep_cluster and hasattr(cluster, "die_with_parent"):
            cluster.die_with_parent = False  # outlive this run, for debugging
        cluster.up()
        suite.timings["cluster_up"] = time.monotonic() - t
        suite.cluster_info = _describe(opt.cluster, name, cluster)
        why = suite.adapter.check_available(cluster)
        if why:
            suite.unavailable = f"implementation {suite.adapter.name!r} cannot run here: {why}"
            _write(suite.config, suite.unavailable)
            return
        _limit(suite, suite.adapter.unsupported_on(cluster))
        lacking = sorted(k for k, v in vars(suite.adapter.components()).items() if v is None)
        if lacking:
            _write(suite.config, f"{suite.adapter.name} has no {', '.join(lacking)}: the tests "
                                 "that need one do not apply (they are deselected)")
        for reason in sorted(set(suite.limits.values())):
            names = sorted(f for f, why in suite.limits.items() if why == reason)
            _write(suite.config, f"unsupported here: {', '.join(names)}: {reason}")
        t = time.monotonic()
        _write(suite.config, f"installing {suite.adapter.name} {suite.adapter.version()}")
        suite.installed = True
        suite.adapter.install(cluster)
        suite.timings["mesh_install"] = time.monotonic() - t
        _write(suite.config, f"cluster up in {suite.timings['cluster_up']:.1f}s, mesh installed "
                             f"in {suite.timings['mesh_install']:.1f}s")
    except AdapterUnavailable as exc:
        suite.unavailable = str(exc)
        _write(suite.config, suite.unavailable)
    except (ClusterError, AdapterError) as exc:
        suite.setup_error = f"setting up the cluster and mesh failed: {exc}"
        _write(suite.config, suite.setup_error)


def _limit(suite: Suite, limits: dict[str, str]) -> None:
    """Withdraw the claims the cluster cannot honour (only those that were made)."""
    suite.limits = {f: why for f, why in limits.items() if f in suite.claimed}
    suite.claimed = suite.claimed - frozenset(suite.limits)


def _describe(kind: str, name: str, cluster: ClusterProvider) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": kind, "name": name, "kubeconfig": str(cluster.kubeconfig)}
    if kind == "local":
        info["root"] = str(cluster.dir.path.parent)  # type: ignore[attr-defined]
        info["nodes"] = cluster.nodes  # type: ignore[attr-defined]
    context = getattr(cluster, "context", None)
    if context:
        info["context"] = context
    return info


def _attach(info: dict[str, Any]) -> ClusterProvider:
    """A worker's handle on the controller's cluster: same cluster, not its owner."""
    if info["kind"] == "local":
        from clusters.local.provider import LocalCluster

        return LocalCluster(info["name"], nodes=info["nodes"], root=info["root"])
    from clusters.existing import ExistingCluster

    return ExistingCluster(Path(info["kubeconfig"]), info.get("context"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Take down what the run made: its own cluster, or, on an existing cluster that
    outlives the run, the implementation it installed there."""
    suite = config.stash.get(SUITE_KEY, None)
    if suite is None or suite.is_worker:
        return
    suite.canaries.discard()
    if suite.cluster is None:
        return
    if config.option.keep_cluster:
        _write(config, f"cluster kept: KUBECONFIG={suite.cluster.kubeconfig}")
        return
    if suite.owns_cluster:
        suite.cluster.teardown()
    elif suite.installed:
        try:
            suite.adapter.uninstall(suite.cluster)
        except (ClusterError, AdapterError) as exc:
            _write(config, f"uninstalling {suite.adapter.name} failed: {exc}")


# -- what runs -----------------------------------------------------------------------------


def needed_features(item: pytest.Item) -> frozenset[str]:
    names: set[str] = set()
    for mark in item.iter_markers("feature"):
        unknown = set(mark.args) - F.ALL_FEATURES
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: unknown feature(s) {sorted(unknown)}")
        names.update(mark.args)
    return frozenset(names)


class ClassifiedSkip(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """A skip with its kind (one of :data:`reports.model.SKIP_KINDS`), for the reports and
    the exit status: an unclaimed or exempted feature is a choice, an unavailable
    environment is not.  A plain ``pytest.skip`` counts as ``other``, the environment's
    doing, which fails the run (see :mod:`reports.gate`)."""

    # Shown as pytest shows its own skips ("Skipped: reason"), not under this class's name.
    __module__ = "builtins"
    __qualname__ = "Skipped"

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def skip_as(kind: str, reason: str) -> NoReturn:
    """Skip the current test as ``kind`` (e.g. ``unsupported``).  Usable in a fixture of
    any scope: a cached fixture re-raises the same exception for every test using it,
    and the kind is read from the exception when each test's report is made."""
    raise ClassifiedSkip(kind, reason)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    suite = item.config.stash[SUITE_KEY]
    needed = needed_features(item)
    item.user_properties.append(("features", ",".join(sorted(needed))))
    if not any(p.covers(needed) for p in suite.profiles):
        skip_as(SKIP_NOT_SELECTED, "not in the selected profiles "
                f"({', '.join(p.name for p in suite.profiles)})")
    exempt = needed & suite.exempt
    if exempt:
        skip_as(SKIP_EXEMPT, f"exempted feature(s): {', '.join(sorted(exempt))}")
    unclaimed = needed - suite.claimed
    if unclaimed:
        why = sorted({suite.limits[f] for f in unclaimed if f in suite.limits})
        skip_as(SKIP_UNSUPPORTED, f"{suite.adapter.name} does not claim "
                f"{', '.join(sorted(unclaimed))}" + (f" ({'; '.join(why)})" if why else ""))
    short = item.name
    if any(short == t or short.startswith(t) for t in suite.skip_tests):
        skip_as(SKIP_NAMED, "named in --skip-tests")
    if suite.unavailable:
        skip_as(SKIP_UNAVAILABLE, suite.unavailable)
    if suite.setup_error:
        pytest.fail(suite.setup_error, pytrace=False)
    failed = _scenario_failure(item)
    if failed:
        pytest.fail(f"not run: the scenario stopped at {failed}", pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Disruptive tests last (a stable sort): see conformance/exclusive.py.  Tests of a
    component the implementation does not have (``needs_component``) do not apply to
    it: they are deselected, rather than skipped as unsupported."""
    items.sort(key=lambda item: item.get_closest_marker(exclusive.MARKER) is not None)
    suite = config.stash.get(SUITE_KEY, None)
    if suite is None:
        return
    components = suite.adapter.components()
    absent = [item for item in items if any(
        getattr(components, m.args[0]) is None for m in item.iter_markers("needs_component"))]
    if absent:  # the bring-up says so once (_bring_up), xdist or not
        config.hook.pytest_deselected(items=absent)
        items[:] = [item for item in items if item not in absent]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    """Every test runs under the run's mesh lock: shared, or exclusive when it is
    ``disruptive``."""
    suite = item.config.stash[SUITE_KEY]
    folder = suite.canaries.folder
    if folder is None or suite.cluster is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive.holding(folder / exclusive.LOCK_FILE,
                           exclusive=item.get_closest_marker(exclusive.MARKER) is not None):
        yield


_SCENARIO_FAILED = pytest.StashKey[str]()
_DIAGNOSED = pytest.StashKey[float]()


def _attach_diagnostics(item: pytest.Item, report: pytest.TestReport) -> None:
    """What the cluster and the mesh looked like when a test failed: the pods, and the
    last lines of each mesh component's log.  At most once every 10 s per process, so
    a cascade of failures does not multiply the cost."""
    suite = item.config.stash[SUITE_KEY]
    cluster = suite.cluster
    if cluster is None or "not run:" in (report.longreprtext or ""):
        return
    now = time.monotonic()
    if now - item.config.stash.get(_DIAGNOSED, -1e9) < 10:
        return
    item.config.stash[_DIAGNOSED] = now
    parts = []
    try:
        pods = cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False, timeout=20)
        parts.append(pods.stdout or pods.stderr)
        names = cluster.kubectl("get", "pods", "-n", "istio-system", "-o", "name",
                                check=False, timeout=20).stdout.split()
        for name in names:
            log = cluster.kubectl("logs", "-n", "istio-system", name, "--tail=25",
                                  check=False, timeout=20)
            parts.append(f"--- {name} (last 25 lines)\n{log.stdout or log.stderr}")
    except Exception as exc:  # diagnostics must never hide the failure itself
        parts.append(f"(diagnostics incomplete: {exc})")
    report.sections.append(("ambient diagnostics", "\n".join(parts)))


def _scenario_failure(item: pytest.Item) -> str | None:
    if item.get_closest_marker("scenario") is None or item.parent is None:
        return None
    return item.parent.stash.get(_SCENARIO_FAILED, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """In a ``scenario`` class, the first failing step stops the rest."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is not None and isinstance(call.excinfo.value, ClassifiedSkip):
        report.user_properties.append(("skip_kind", call.excinfo.value.kind))
    if report.failed and call.when in ("setup", "call"):
        _attach_diagnostics(item, report)
    if (report.failed and item.get_closest_marker("scenario") is not None
            and item.parent is not None and _SCENARIO_FAILED not in item.parent.stash):
        item.parent.stash[_SCENARIO_FAILED] = item.name


# -- results (controller) ------------------------------------------------------------------


class _Recorder:
    """Turns the reports of every test (from any worker) into records, then reports."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.doc: dict[str, Any] | None = None
        self.verdict: Verdict | None = None
        # A failed kind run's exported cluster logs, or why the export failed.
        self.cluster_logs: Path | None = None
        self.cluster_logs_problem: str | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        suite = self.suite
        props = dict(report.user_properties)
        rec = suite.records.get(report.nodeid)
        if rec is None:
            feats = frozenset(f for f in str(props.get("features", "")).split(",") if f)
            # the name within its module: Class::test[param], as pytest -k sees it
            name = report.nodeid.split("::", 1)[-1].partition("@")[0]
            rec = suite.records[report.nodeid] = TestRecord(report.nodeid, name, "passed", feats)
        rec.duration += report.duration
        rec.properties.update(_statistics(report))
        if report.skipped and rec.outcome != "failed":
            rec.outcome = "skipped"
            rec.skip_kind = str(props.get("skip_kind", SKIP_OTHER))
            longrepr = report.longrepr
            message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            rec.message = message.removeprefix("Skipped: ")
        elif report.failed:
            rec.outcome = "failed"
            rec.message = _first_line(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # tryfirst: pytest-html writes its file in its own sessionfinish and shows the
        # profile table, so the conformance report must exist before.
        # The exit status is decided here too, from the same records, and set on the
        # session: pytest exits with session.exitstatus as it stands after this hook.
        suite = self.suite
        if session.config.option.collectonly:
            return
        if session.config.option.cluster == "kind":
            failed = any(rec.outcome == "failed" for rec in suite.records.values())
            self.cluster_logs, self.cluster_logs_problem = export_cluster_logs(
                suite.cluster, failed=failed, dest=suite.report_dir / KIND_LOGS)
            if self.cluster_logs_problem:
                _write(session.config, self.cluster_logs_problem)
        from reports.conformance import build_report, write_report

        records = list(suite.records.values())
        doc = build_report(run_info(suite), records) if records else None
        self.verdict = decide(records, pytest_status=int(session.exitstatus),
                              not_runnable=suite.unavailable or suite.setup_error,
                              result=doc["result"] if doc else None)
        session.exitstatus = self.verdict.status
        if doc is None:
            return
        if suite.timings:
            doc["setupSeconds"] = {k: round(v, 2) for k, v in suite.timings.items()}
        doc["exitStatus"] = self.verdict.status
        doc["exitReason"] = self.verdict.headline
        write_report(doc, suite.report_dir / "conformance-report.yaml")
        self.doc = doc

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if self.verdict is None:
            return
        from reports.summary import summary_lines

        terminalreporter.section("ambient conformance")
        if self.doc is not None:
            for line in summary_lines(self.doc):
                terminalreporter.write_line(line)
            files = [str(self.suite.report_dir / "conformance-report.yaml"),
                     config.option.xmlpath]
            if getattr(config.option, "htmlpath", None):
                files.append(config.option.htmlpath)
            terminalreporter.write_line(f"reports: {', '.join(files)}")
        if self.cluster_logs is not None:
            terminalreporter.write_line(f"kind cluster logs: {self.cluster_logs}")
        elif self.cluster_logs_problem:
            terminalreporter.write_line(self.cluster_logs_problem)
        for line in self.verdict.lines():
            terminalreporter.write_line(line)

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """The verdict again as the very last line, after pytest's own counts, so a CI
        log's tail says why the job failed (or why a partial result still passed)."""
        if self.verdict is not None:
            _write(config, self.verdict.headline)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list) -> None:
        """A test's recorded statistics (a traffic split's n, counts, p-value) under
        its row of the HTML report."""
        if report.when != "call":
            return
        stats = _statistics(report)
        if stats:
            from reports.html import statistics_html

            data.append(statistics_html(stats))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list,
                                    session: pytest.Session) -> None:
        if self.doc is not None:
            from reports.html import profile_table_html

            prefix.append(profile_table_html(self.doc))
        htmlpath = getattr(session.config.option, "htmlpath", None)
        if self.cluster_logs is not None and htmlpath:
            prefix.append(cluster_logs_html(self.cluster_logs, Path(htmlpath)))


def export_cluster_logs(cluster: ClusterProvider | None, *, failed: bool,
                        dest: Path) -> tuple[Path | None, str | None]:
    """After a failed run on kind, ``kind export logs`` into ``dest``: the nodes'
    journals, kubelet, containerd and container logs, which vanish with the cluster at
    teardown.  Called once, at session end, so every failure of the run is in them.

    Returns the folder (None when nothing was exported) and, if the export itself
    failed, why.  An earlier run's folder is removed first, so logs beside a report are
    always that run's.
    """
    shutil.rmtree(dest, ignore_errors=True)
    export = getattr(cluster, "export_logs", None)
    if export is None or not failed:
        return None, None
    try:
        return Path(export(dest)), None
    except ClusterError as exc:
        return None, f"exporting the kind cluster's logs failed: {exc}"


def cluster_logs_html(logs: Path, html_file: Path) -> str:
    """A link from the HTML report's summary to the exported cluster logs, relative to
    the report, so the folder can be moved (or archived by CI) together with it."""
    from urllib.parse import quote

    relative = Path(os.path.relpath(logs, html_file.parent)).as_posix() + "/"
    return (f'<p class="kind-logs">A test failed: the kind cluster\'s logs (<code>kind export '
            f'logs</code>: nodes, kubelet, containerd, pods) are in <a href="'
            f'{escape(quote(relative), quote=True)}">{escape(relative)}</a>.</p>')


def _statistics(report: pytest.TestReport) -> dict[str, str]:
    """What the test recorded with ``record_property``, without the plugin's own keys."""
    return {str(k): str(v) for k, v in report.user_properties
            if k not in ("features", "skip_kind")}


def _first_line(report: pytest.TestReport) -> str:
    text = report.longreprtext or ""
    for line in text.splitlines():
        if line.startswith("E "):
            return line[1:].strip()[:300]
    return text.strip().splitlines()[-1][:300] if text.strip() else "failed"


def run_info(suite: Suite) -> RunInfo:
    config = suite.config
    return RunInfo(
        implementation=suite.adapter.name, version=suite.adapter.version(),
        organization=config.option.organization, project_url=config.option.project_url,
        contact=list(config.option.contact),
        flavours=sorted(suite.flavours), cluster=config.option.cluster,
        suite_version=SUITE_VERSION,
        date=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        claimed_features=suite.claimed, exempt_features=suite.exempt,
        unsupported_reasons=dict(suite.limits),
        profiles=[p.name for p in suite.profiles],
        command=shlex.join(["pytest", *config.invocation_params.args]),
        duration=time.monotonic() - suite.started)
