"""The control-plane scale benchmark: one local cluster, a growing population, policy flips.

For each size the run grows the fake population (``population.py``) to that many pods,
waits until the control plane published them and every ztunnel acknowledged the result,
then makes ``changes`` AuthorizationPolicy changes one after another and measures, for each:

- **data path**: from the API write to the moment a real client pod's connections to a
  real server pod on *every* node show the new decision (``probe.py data``): the first
  answer of two in a row in the new state, per server, the latest of them counting;
- **syncz**: from the same write to the moment the control plane published a newer
  version, and to the moment every ztunnel acknowledged it (``probe.py syncz``).

The policy is one AuthorizationPolicy selecting the servers with a rule naming the
client's identity; its action flips DENY, ALLOW, DENY... so the client is denied, then
allowed again, by each change.  Change 0 of each size creates it (the size starts without
it); the others update it.  Memory (RSS and peak) of the control plane's and each
ztunnel's process is read from /proc before and after the changes, with the control
plane's CPU seconds spent across them.

It keeps one cluster across sizes (growing it is far cheaper than starting again), and
tears it down in ``finally``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clusters.polling import poll
from perf.process_usage import ProcessUsage, pod_usage

from .population import Layout, Population
from .stats import summarize

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = PROJECT_ROOT / "reports" / "out" / "perf" / "scale.json"
PROBE_NS = "scale-probe"
SYSTEM_NS = "istio-system"
POLICY = "scale-flip"
SERVER_PORT = 8080
CAPTURE_ANNOTATION = "ambient.istio.io/redirection"
GOAL = {"at_pods": 1000, "propagation_p99_s": 1.0, "istiod_rss_bytes": 200_000_000}

Progress = Callable[[str], None]


class BenchmarkError(RuntimeError):
    """The benchmark could not go on; the text says at which step and why."""


@dataclass
class Config:
    """What one run measures; the defaults are the issue's (100, 500 and 1,000 pods)."""

    sizes: list[int] = field(default_factory=lambda: [100, 500, 1000])
    changes: int = 20
    layout: Layout = field(default_factory=Layout)
    nodes: int = 2
    adapter: str = "reference"
    change_timeout: float = 30.0
    probe_interval: float = 0.02
    syncz_interval: float = 0.01
    settle_quiet: float = 0.3
    population_quiet: float = 1.0
    population_timeout: float = 300.0
    profile_dir: Path | None = None
    cluster_root: Path | None = None

    def __post_init__(self) -> None:
        if not self.sizes or any(s < 1 for s in self.sizes):
            raise ValueError("sizes must be positive pod counts")
        if self.changes < 1:
            raise ValueError("changes must be at least 1")
        self.sizes = sorted(set(self.sizes))


# -- observers --------------------------------------------------------------------------------


class Observer:
    """One ``perf.scale.probe`` process inside a network namespace, spoken to in JSON lines."""

    def __init__(self, netns: str, args: list[str], log_path: Path) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "perf.scale.probe", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
            cwd=PROJECT_ROOT, bufsize=0)
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())

    def read(self, timeout: float) -> dict[str, Any]:
        """The next reply; raises ``BenchmarkError`` after ``timeout`` s or if it died."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkError(f"observer gave no answer within {timeout:g}s "
                                     f"(log {self.log_path})")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise BenchmarkError(f"observer exited: {_tail(self.log_path)}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def ask(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.send(message)
        return self.read(timeout)

    def close(self) -> None:
        try:
            self.send({"cmd": "quit"})
            self.proc.wait(3)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# -- the run ----------------------------------------------------------------------------------


def _stderr_progress(started: float) -> Progress:
    def progress(message: str) -> None:
        print(f"[scale {time.monotonic() - started:7.1f}s] {message}", file=sys.stderr,
              flush=True)
    return progress


def real_pods(nodes: list[str]) -> list[dict[str, Any]]:
    """The measuring workloads: a server on every node and one client (on the first).

    Bare Pods pinned with ``nodeName``, so every node's ztunnel has a server to judge
    connections for, whatever a scheduler would have chosen.
    """
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": PROBE_NS}}
        for name in ("scale-client", "scale-server")
    ]
    for node in nodes:
        objects.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"scale-server-{node}", "namespace": PROBE_NS,
                         "labels": {"app": "scale-server"}},
            "spec": {"nodeName": node, "serviceAccountName": "scale-server",
                     "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "server", "image": "ambient-harness/bench-server",
                                     "ports": [{"containerPort": SERVER_PORT,
                                                "name": "http"}]}]},
        })
    objects.append({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "scale-client", "namespace": PROBE_NS,
                     "labels": {"app": "scale-client"}},
        "spec": {"nodeName": nodes[0], "serviceAccountName": "scale-client",
                 "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "client", "image": "curlimages/curl",
                                 "command": ["/bin/sleep", "3650d"]}]},
    })
    return objects


def policy(action: str, trust_domain: str = "cluster.local") -> dict[str, Any]:
    """The flipped policy: ``action`` (DENY or ALLOW) for connections from the client to
    the servers.  Under ALLOW the client is the one identity allowed, so both states say
    something about the client alone."""
    return {
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": POLICY, "namespace": PROBE_NS},
        "spec": {"selector": {"matchLabels": {"app": "scale-server"}}, "action": action,
                 "rules": [{"from": [{"source": {"principals": [
                     f"{trust_domain}/ns/{PROBE_NS}/sa/scale-client"]}}]}]},
    }


class ScaleRun:
    """One benchmark run against one cluster (see the module doc)."""

    def __init__(self, config: Config, progress: Progress | None = None) -> None:
        self.config = config
        self.started = time.monotonic()
        self.progress = progress or _stderr_progress(self.started)
        self.cluster: Any = None
        self.adapter: Any = None
        self.data: Observer | None = None
        self.syncz: Observer | None = None
        self.nodes: list[str] = []
        self.pods: dict[str, dict[str, Any]] = {}  # "istiod", "ztunnel/<node>", "server/..."
        self.targets: dict[str, str] = {}  # "ip:port" -> node
        self.workdir: Path | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Up, measure every size, down (always); the report as a dict."""
        from clusters.local.provider import LocalCluster
        from conformance.adapters import load_adapter

        if os.geteuid() != 0:
            raise BenchmarkError("the local cluster's nodes need root (network namespaces)")
        wall_start = datetime.now(UTC)
        name = f"perf-scale-{os.getpid()}"
        self.cluster = LocalCluster(name, nodes=self.config.nodes,
                                    root=self.config.cluster_root)
        self.adapter = load_adapter(self.config.adapter)
        report: dict[str, Any] = {}
        try:
            self.progress(f"cluster {name}: starting ({self.config.nodes} nodes)")
            self.cluster.up()
            self.workdir = self.cluster.dir.path / "perf-scale"
            self.workdir.mkdir(exist_ok=True)
            self.progress(f"installing the {self.config.adapter} implementation")
            self.adapter.install(self.cluster)
            self._start_measuring_pods()
            report = self._measure_all()
        except BaseException:
            self._keep_logs()
            raise
        finally:
            for observer in (self.data, self.syncz):
                if observer is not None:
                    observer.close()
            self.progress("tearing the cluster down")
            self.cluster.teardown()
        report["wall_seconds"] = round(time.monotonic() - self.started, 1)
        report["started_at"] = wall_start.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.progress(f"done in {report['wall_seconds']}s")
        return report

    def _keep_logs(self) -> None:
        """Copy the cluster's logs (API server, node agents, pods, observers) beside the
        report before teardown removes them: a failed run must be explainable."""
        if self.cluster is None or not self.cluster.dir.path.exists():
            return
        dest = DEFAULT_OUT.parent / "scale-failure-logs"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        for path in self.cluster.dir.path.rglob("*.log"):
            target = dest / path.relative_to(self.cluster.dir.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        self.progress(f"run failed: logs kept in {dest}")

    def _start_measuring_pods(self) -> None:
        from kubernetes import client

        with self.cluster.api_client() as api:
            core = client.CoreV1Api(api)
            self.nodes = sorted(n.metadata.name for n in core.list_node().items)
        self.cluster.apply([{"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": PROBE_NS,
                                          "labels": dict(self.adapter.enroll_labels())}}])
        self.cluster.apply(real_pods(self.nodes))
        self.progress(f"waiting for the client and {len(self.nodes)} servers to be ready "
                      "and captured")
        pods = self._wait_pods(PROBE_NS, 1 + len(self.nodes), captured=True, timeout=120)
        for pod in pods:
            name = pod["metadata"]["name"]
            self.pods[name] = pod
            if name.startswith("scale-server-"):
                self.targets[f"{pod['status']['podIP']}:{SERVER_PORT}"] = pod["spec"]["nodeName"]
        system = self._wait_pods(SYSTEM_NS, 0, captured=False, timeout=60)
        for pod in system:
            labels = pod["metadata"].get("labels") or {}
            if labels.get("app") == "istiod":
                self.pods["istiod"] = pod
            elif labels.get("app") == "ztunnel":
                self.pods[f"ztunnel/{pod['spec']['nodeName']}"] = pod
        if "istiod" not in self.pods:
            raise BenchmarkError("no pod labelled app=istiod in istio-system")
        from clusters.local.network.topology import pod_netns

        assert self.workdir is not None
        self.syncz = Observer(pod_netns(self.pods["istiod"]["metadata"]["uid"]),
                              ["syncz", "--interval", str(self.config.syncz_interval)],
                              self.workdir / "syncz-observer.log")
        args = ["data", "--interval", str(self.config.probe_interval)]
        for target in self.targets:
            args += ["--target", target]
        self.data = Observer(pod_netns(self.pods["scale-client"]["metadata"]["uid"]), args,
                             self.workdir / "data-observer.log")
        check = self.data.ask({"cmd": "check"}, timeout=30)
        if any(s != "allowed" for s in check["states"].values()):
            raise BenchmarkError(f"the client cannot reach every server before any policy: "
                                 f"{check['states']}")
        self.progress(f"observers up; client reaches {len(self.targets)} servers: "
                      f"{check['states']}")

    def _wait_pods(self, namespace: str, count: int, captured: bool,
                   timeout: float) -> list[dict[str, Any]]:
        """Every pod in ``namespace`` Running and Ready (at least ``count`` of them), and
        with the capture annotation if asked; polled, at most ``timeout`` seconds."""
        from kubernetes import client

        with self.cluster.api_client() as api:
            core = client.CoreV1Api(api)

            def pods() -> list[dict[str, Any]]:
                return [api.sanitize_for_serialization(p)
                        for p in core.list_namespaced_pod(namespace).items]

            def done(seen: list[dict[str, Any]]) -> bool:
                return len(seen) >= count and all(_ready(p) for p in seen) and (
                    not captured or all((p["metadata"].get("annotations") or {}).get(
                        CAPTURE_ANNOTATION) == "enabled" for p in seen))

            polled = poll(pods, done, timeout=timeout, interval=0.25, max_interval=0.25)
        if not polled.held:
            state = {p["metadata"]["name"]: (p["status"].get("phase"),
                     (p["metadata"].get("annotations") or {}).get(CAPTURE_ANNOTATION))
                     for p in polled.value}
            raise BenchmarkError(f"pods in {namespace} not ready"
                                 f"{' and captured' if captured else ''} within "
                                 f"{timeout:g}s: {state}")
        return polled.value

    # -- measuring ----------------------------------------------------------------------------

    def _measure_all(self) -> dict[str, Any]:
        cfg = self.config
        population = Population(self.cluster.api_client, cfg.layout,
                                enroll_labels=dict(self.adapter.enroll_labels()))
        settled = self._settle(cfg.population_quiet, cfg.population_timeout)
        baseline = {"workloads_published": self._published_workloads(),
                    "settled": settled.get("settled"), "memory": self._memory()}
        self.progress(f"baseline (no fake pods): istiod "
                      f"{_mib(baseline['memory'].get('istiod'))} MiB RSS")
        sizes = []
        for size in cfg.sizes:
            sizes.append(self._measure_size(population, size))
        return {
            "benchmark": "control-plane-scale",
            "implementation": cfg.adapter,
            "implementation_version": self.adapter.version(),
            "command": " ".join(["python -m perf.scale", *sys.argv[1:]]),
            "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
            "config": {**{k: v for k, v in asdict(cfg).items()
                          if k not in ("layout", "profile_dir", "cluster_root")},
                       "layout": asdict(cfg.layout), "profiled": cfg.profile_dir is not None,
                       "nodes_names": self.nodes,
                       "targets": {t: n for t, n in self.targets.items()}},
            "method": {
                "data_path": "client pod -> a server pod on every node, new TCP connection and "
                             "HTTP request per probe; time from the API write to the first of "
                             "two consecutive answers in the new state, latest node counting",
                "syncz_version": "time from the API write until /debug/syncz shows a newer "
                                 "version",
                "syncz_ack": "time from the API write until every ztunnel acknowledged that "
                             "version (or a later one) in /debug/syncz",
                "percentiles": "nearest rank; with fewer than 100 changes p99 is the maximum",
                "memory": "VmRSS / VmHWM of the pod's process, found in /proc by AH_POD_NAME "
                          "and network namespace",
            },
            "goal": GOAL,
            "baseline": baseline,
            "sizes": sizes,
            "goal_met": goal_verdict(sizes),
        }

    def _measure_size(self, population: Population, size: int) -> dict[str, Any]:
        cfg = self.config
        self.progress(f"size {size}: growing the fake population from {population.pods}")
        grown = population.grow_to(size)
        self.progress(f"size {size}: {grown['created_pods']} pods, "
                      f"{grown['created_services']} services created in {grown['seconds']}s; "
                      "waiting for the control plane and every ztunnel")
        t0 = time.monotonic()
        expected = size + len(self.targets) + 1
        published = self._wait_published(expected, cfg.population_timeout)
        settled = self._settle(cfg.population_quiet, cfg.population_timeout)
        settle_s = time.monotonic() - t0
        self.progress(f"size {size}: {published} workloads published, in sync after "
                      f"{settle_s:.1f}s")
        self._delete_policy()
        memory_before = self._memory()
        istiod_before = memory_before.get("istiod")
        profiler = self._start_profiler(size)
        changes = []
        try:
            for i in range(cfg.changes):
                changes.append(self._change(i))
                c = changes[-1]
                self.progress(
                    f"size {size}: change {i + 1}/{cfg.changes} {c['kind']} {c['action']}: "
                    f"data path {_fmt(c['data_path_s'])}, syncz ack {_fmt(c['syncz_ack_s'])}")
        finally:
            profile = self._stop_profiler(profiler)
        memory_after = self._memory()
        istiod_after = memory_after.get("istiod")
        cpu = (round(istiod_after["cpu_seconds"] - istiod_before["cpu_seconds"], 2)
               if istiod_before and istiod_after else None)
        result = {
            "pods": size,
            **{k: grown[k] for k in ("services", "namespaces")},
            "workloads_published": published,
            "populate_seconds": grown["seconds"],
            "sync_after_populate_seconds": round(settle_s, 2),
            "settled": settled.get("settled"),
            "propagation": {
                "data_path": summarize(c["data_path_s"] for c in changes),
                "syncz_ack": summarize(c["syncz_ack_s"] for c in changes),
                "syncz_version": summarize(c["syncz_version_s"] for c in changes),
                "api_write": summarize(c["api_write_s"] for c in changes),
            },
            "memory": {"before_changes": memory_before, "after_changes": memory_after},
            "istiod_rss_mib": _mib(istiod_after),
            "istiod_hwm_mib": _mib(istiod_after, "hwm"),
            "ztunnel_rss_mib": {k.split("/", 1)[1]: _mib(v) for k, v in memory_after.items()
                                if k.startswith("ztunnel/")},
            "istiod_cpu_seconds_during_changes": cpu,
            "changes": changes,
        }
        if profile:
            result["profile"] = profile
        prop = result["propagation"]
        self.progress(f"size {size}: data path p50 {_fmt(prop['data_path']['p50_s'])} "
                      f"p99 {_fmt(prop['data_path']['p99_s'])}; syncz ack p50 "
                      f"{_fmt(prop['syncz_ack']['p50_s'])} p99 {_fmt(prop['syncz_ack']['p99_s'])}"
                      f"; istiod {result['istiod_rss_mib']} MiB")
        return result

    def _change(self, index: int) -> dict[str, Any]:
        """One policy change, observed on the data path and in syncz."""
        from kubernetes import client

        assert self.data is not None and self.syncz is not None
        cfg = self.config
        action = "DENY" if index % 2 == 0 else "ALLOW"
        want = "denied" if action == "DENY" else "allowed"
        kind = "create" if index == 0 else "update"
        settled = self._settle(cfg.settle_quiet, 60)
        record: dict[str, Any] = {"index": index, "kind": kind, "action": action, "want": want,
                                  "data_path_s": None, "syncz_ack_s": None,
                                  "syncz_version_s": None, "api_write_s": None,
                                  "per_node_s": {}}
        problem = None
        if not settled.get("settled"):
            problem = f"not in sync before the change: {settled}"
        else:
            armed = self.data.ask({"cmd": "watch", "want": want,
                                   "timeout": cfg.change_timeout}, timeout=30)
            if not armed.get("armed"):
                problem = f"servers not in the expected state before the change: {armed}"
        if problem is None:
            self.syncz.send({"cmd": "watch", "base": settled["version"],
                             "clients": len(self.nodes), "timeout": cfg.change_timeout})
        with self.cluster.api_client() as api:
            objects = client.CustomObjectsApi(api)
            t0 = time.monotonic()
            if kind == "create":
                objects.create_namespaced_custom_object(
                    "security.istio.io", "v1", PROBE_NS, "authorizationpolicies", policy(action))
            else:
                objects.patch_namespaced_custom_object(
                    "security.istio.io", "v1", PROBE_NS, "authorizationpolicies", POLICY,
                    {"spec": {"action": action}})
            t_written = time.monotonic()
        if problem is not None:
            # Made all the same, unmeasured, so the changes after it start from the state
            # they expect; counted as a miss.
            record["error"] = problem
            return record
        sync = self.syncz.read(cfg.change_timeout + 30)
        done = self.data.read(cfg.change_timeout + 30)
        per_node: dict[str, float | None] = {}
        probe_ms = []
        for target, result in (done.get("targets") or {}).items():
            node = self.targets.get(target, target)
            per_node[node] = round(result["t"] - t0, 4) if result.get("t") else None
            if result.get("probe_ms") is not None:
                probe_ms.append(result["probe_ms"])
        record.update({
            "api_write_s": round(t_written - t0, 4),
            "per_node_s": per_node,
            "data_path_s": (max(per_node.values()) if per_node
                            and all(v is not None for v in per_node.values()) else None),
            "syncz_version_s": round(sync["t_version"] - t0, 4) if sync.get("t_version")
            else None,
            "syncz_ack_s": round(sync["t_acked"] - t0, 4) if sync.get("t_acked") else None,
            "version": sync.get("version"),
            "probe_ms": round(max(probe_ms), 2) if probe_ms else None,
        })
        if record["data_path_s"] is None:
            record["error"] = f"not enforced everywhere within {cfg.change_timeout:g}s: {done}"
        return record

    # -- helpers --------------------------------------------------------------------------------

    def _settle(self, quiet: float, timeout: float) -> dict[str, Any]:
        assert self.syncz is not None
        return self.syncz.ask({"cmd": "settle", "clients": len(self.nodes), "quiet": quiet,
                               "timeout": timeout}, timeout + 30)

    def _published_workloads(self) -> int | None:
        """The control plane's own count (``pilot_workloads`` on its metrics), if it has one."""
        assert self.syncz is not None
        reply = self.syncz.ask({"cmd": "get", "path": "/metrics"}, 30)
        for line in (reply.get("body") or "").splitlines():
            if line.startswith("pilot_workloads "):
                return int(float(line.split()[1]))
        return None

    def _wait_published(self, expected: int, timeout: float) -> int | None:
        # None: the control plane does not export the figure, so nothing to wait for
        count = poll(self._published_workloads, lambda n: n is None or n >= expected,
                     timeout=timeout, interval=0.5, max_interval=0.5).value
        if count is not None and count < expected:
            raise BenchmarkError(f"the control plane published {count} workloads, "
                                 f"expected at least {expected} after {timeout:g}s")
        return count

    def _delete_policy(self) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with self.cluster.api_client() as api:
            try:
                client.CustomObjectsApi(api).delete_namespaced_custom_object(
                    "security.istio.io", "v1", PROBE_NS, "authorizationpolicies", POLICY)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _memory(self) -> dict[str, dict[str, Any]]:
        from clusters.local.network.topology import node_netns, pod_netns

        out: dict[str, dict[str, Any]] = {}
        for key, pod in self.pods.items():
            if key == "istiod":
                netns = Path("/run/netns") / pod_netns(pod["metadata"]["uid"])
            elif key.startswith("ztunnel/"):
                netns = Path("/run/netns") / node_netns(self.cluster.name,
                                                        pod["spec"]["nodeName"])
            else:
                continue
            found = pod_usage(pod["metadata"]["name"], netns if netns.exists() else None)
            if found is not None:
                out[key] = _sample_dict(found)
        return out

    def _start_profiler(self, size: int) -> tuple[subprocess.Popen[bytes], Path] | None:
        if self.config.profile_dir is None:
            return None
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        istiod = self._memory().get("istiod")
        if not Path(pyspy).exists() or istiod is None:
            self.progress("profiling asked for, but py-spy or the istiod process is missing")
            return None
        self.config.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.config.profile_dir / f"scale-istiod-{size}.txt"
        proc = subprocess.Popen([pyspy, "record", "--pid", str(istiod["pid"]), "--rate", "200",
                                 "--nonblocking", "--format", "raw", "--output", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # py-spy attaches before the first change
        return proc, out

    def _stop_profiler(self, profiler: tuple[subprocess.Popen[bytes], Path] | None
                       ) -> str | None:
        if profiler is None:
            return None
        proc, out = profiler
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        return str(out) if out.exists() else None


def goal_verdict(sizes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Whether the issue's goal holds at 1,000 pods (None when that size was not run)."""
    at = next((s for s in sizes if s["pods"] == GOAL["at_pods"]), None)
    if at is None:
        return None
    p99 = at["propagation"]["data_path"]["p99_s"]
    missed = at["propagation"]["data_path"]["missed"]
    rss = ((at["memory"]["after_changes"].get("istiod") or {}).get("rss_bytes"))
    return {
        "propagation": p99 is not None and not missed and p99 <= GOAL["propagation_p99_s"],
        "istiod_memory": rss is not None and rss <= GOAL["istiod_rss_bytes"],
    }


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ())


def _sample_dict(s: ProcessUsage) -> dict[str, Any]:
    return {"pid": s.pid, "rss_bytes": s.rss_bytes, "hwm_bytes": s.peak_rss_bytes,
            "cpu_seconds": round(s.cpu_seconds, 2)}


def _mib(sample: dict[str, Any] | None, which: str = "rss") -> float | None:
    if not sample:
        return None
    return round(sample[f"{which}_bytes"] / 2**20, 1)


def _fmt(seconds: float | None) -> str:
    return "missed" if seconds is None else f"{seconds * 1000:.0f} ms"
