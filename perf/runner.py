"""The perf run: every mode of every scenario of a profile, in one cluster, one run.

For each scenario the runner deploys the target and the load generator in a
namespace of their own, then measures the modes in order (no mesh, L4, L4+L7) on
the same pods, with the mesh installed throughout so the baseline carries the
same idle ztunnel and control plane.  Per mode the load generator runs the rate
ladder, then the maximum-throughput probe, while the sampling loop records each
component's CPU and memory.  The mesh is acted on only through the adapter.

Given several adapters (``--adapter reference --adapter istio``), each scenario's
pods are measured by every implementation in turn: the first one's modes as
above, then, for each further implementation, the namespace leaves the mesh
(observed), the installed implementation is replaced by the next, and its mesh
modes are measured on the same pods (``l4@istio``).  One no-mesh baseline serves
them all.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from conformance.adapters.base import MeshAdapter
from perf import components as comp
from perf import modes, workloads
from perf.component_samplers import ComponentSampler, sampler_for
from perf.environment import cluster_info, host_info, node_names
from perf.histogram import LatencyHistogram
from perf.loadgen_client import LoadgenError, LoadgenPod
from perf.plan import BASELINE_MODE, MODE_LABELS, Faults, LoadPlan, Step
from perf.profiles import Profile, ScenarioLoad
from perf.results import (
    SCHEMA,
    SMPS_VERSION,
    annotate_baseline,
    step_result,
    summarize,
)
from perf.sampling_loop import SamplingLoop
from perf.step_usage import window_usage
from perf.validity import invalid_reasons

ZTUNNEL_MIN_CPU_PER_1K = 0.005
"""CPU seconds per 1,000 requests that traffic through ztunnel costs at the very least
(Istio's Rust ztunnel: about 0.06 per ztunnel); below it, traffic did not go through."""


def bypassed_ztunnel(mode: dict[str, Any], baseline: dict[str, Any]) -> str | None:
    """Why the mode's traffic evidently did not cross ztunnel, or None.

    Asked only when capture was not confirmed: ztunnel's CPU over its no-mesh idle level,
    at the busiest step both modes measured (at 10 req/s idle noise dominates), is the
    evidence any mesh leaves, annotation or not.
    """
    def pairs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        base = {s["target_rps"]: s for s in baseline.get("steps") or ()}
        out = [(s, base[s["target_rps"]]) for s in mode.get("steps") or ()
               if s["target_rps"] in base]
        if mode.get("max_throughput") and baseline.get("max_throughput"):
            out.append((mode["max_throughput"], baseline["max_throughput"]))
        return [(a, b) for a, b in out
                if a["components"].get("ztunnel", {}).get("available")
                and b["components"].get("ztunnel", {}).get("available") and a["actual_qps"]]

    candidates = pairs()
    if not candidates:
        return None
    step, ref = max(candidates, key=lambda p: p[0]["actual_qps"])
    extra = (step["components"]["ztunnel"]["cpu_cores"] -
             ref["components"]["ztunnel"]["cpu_cores"]) / step["actual_qps"] * 1000
    if extra < ZTUNNEL_MIN_CPU_PER_1K:
        return (f"the mesh was not in the path: capture was not confirmed and at "
                f"{step['actual_qps']:.0f} req/s ztunnel used {extra:+.4f} CPU seconds per 1k "
                f"requests over its no-mesh level (< {ZTUNNEL_MIN_CPU_PER_1K})")
    return None


class PerfError(Exception):
    """The run cannot go on (bad input, unreachable target); the message says why."""


@dataclass
class RunOptions:
    profile: Profile
    components: tuple[comp.ComponentRef, ...] = comp.DEFAULT_COMPONENTS
    faults: Faults = field(default_factory=Faults)
    server: str = "bench"
    progress: TextIO = field(default_factory=lambda: sys.stderr)
    rollout_timeout_s: float = 90.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class Progress:
    """One line per event on stderr, with the time since the run started."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[perf {time.monotonic() - self.t0:6.1f}s] {message}", file=self.out, flush=True)


class PerfRunner:
    def __init__(self, cluster: Any, adapter: MeshAdapter | Sequence[MeshAdapter],
                 options: RunOptions, sampler: ComponentSampler | None = None) -> None:
        self.cluster = cluster
        self.adapters = [adapter] if isinstance(adapter, MeshAdapter) else list(adapter)
        if not self.adapters:
            raise PerfError("a perf run needs at least one mesh adapter")
        names = [a.name for a in self.adapters]
        if len(set(names)) != len(names):
            raise PerfError(f"each adapter may be measured once per run, got {names}")
        self.adapter = self.adapters[0]
        self.installed: MeshAdapter | None = None
        self.versions: dict[str, str] = {}
        self.options = options
        self.profile = options.profile
        self.sampler = sampler or sampler_for(cluster)
        self.say = Progress(options.progress)
        self.loadgen_versions: dict[str, Any] = {}

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        started = time.time()
        self.say(f"profile {self.profile.name}: modes {', '.join(self.profile.modes)}; "
                 f"about {self.profile.estimated_seconds():.0f}s of load")
        env = {**await asyncio.to_thread(cluster_info, self.cluster), "host": host_info()}
        nodes = await asyncio.to_thread(node_names, self.cluster)
        for adapter in self.adapters:
            reason = adapter.check_available(self.cluster)
            if reason:
                raise PerfError(f"adapter {adapter.name} cannot run here: {reason}")
            self.versions[adapter.name] = adapter.version()
        await self._switch_to(self.adapter)
        sampler_reason = await asyncio.to_thread(self.sampler.unavailable_reason)
        if sampler_reason:
            self.say(f"component CPU/memory unavailable: {sampler_reason}")
        scenarios: list[dict[str, Any]] = []
        for load in self.profile.loads:
            try:
                scenarios.append(await self.run_scenario(load, nodes, sampler_reason))
            except PerfError as exc:
                # What the other scenarios measured is kept; this one is a failure.
                self.say(f"{load.scenario}: FAILED: {exc}")
                scenarios.append({"name": load.scenario, "status": "failed",
                                  "reason": str(exc), "namespace": f"perf-{load.scenario}",
                                  "server": None, "endpoint_url": None,
                                  "waypoint_services": [], "sampler_errors": [], "modes": []})
        if all(sc.get("status") == "failed" for sc in scenarios):
            raise PerfError("; ".join(f"{sc['name']}: {sc['reason']}" for sc in scenarios))
        ended = time.time()
        doc = self.document(started, ended, env, scenarios, sampler_reason)
        return doc

    async def run_scenario(self, load: ScenarioLoad, nodes: list[str],
                           sampler_reason: str | None) -> dict[str, Any]:
        ns = f"perf-{load.scenario}"
        # Every scenario's pods start under the first implementation, as in a run of
        # that implementation alone.
        await self._switch_to(self.adapter)
        server = "echo" if self.options.faults.by_mode else self.options.server
        target = workloads.target_for(load.scenario, ns, nodes, server)
        manifests = [workloads.namespace_manifest(ns), *target.manifests,
                     *workloads.loadgen_manifests(ns, workloads.loadgen_node(nodes))]
        self.say(f"{load.scenario}: deploying {', '.join(target.deployments)} and the load "
                 f"generator in {ns}")
        await asyncio.to_thread(self.cluster.apply, manifests)
        await self._rollout(ns, [*target.deployments, workloads.LOADGEN_NAME])
        loadgen = LoadgenPod(self.cluster, ns, await self._pod_of(ns, workloads.LOADGEN_NAME),
                             workloads.LOADGEN_PORT)
        loop = SamplingLoop(self.sampler, self.profile.sample_interval_s)
        if not sampler_reason:
            loop.start()
        results: list[dict[str, Any]] = []
        try:
            for i, adapter in enumerate(self.adapters):
                await self._switch_to(adapter)
                implementation = None if i == 0 else adapter.name
                enrolled = False
                state: modes.ModeState | None = None
                for mode in self.profile.modes:
                    if i and mode == BASELINE_MODE:
                        continue
                    baseline = next((r for r in results if r["mode"] == BASELINE_MODE), None)
                    result, entered = await self.run_mode(
                        load, mode, target, loadgen, loop, enrolled, sampler_reason, baseline,
                        adapter=adapter, implementation=implementation)
                    results.append(result)
                    state = entered or state
                    enrolled = enrolled or (entered is not None and mode in ("l4", "l7"))
                if i + 1 < len(self.adapters) and enrolled and state is not None:
                    stuck = await self._leave(state, adapter, target)
                    if stuck:
                        results.extend(self._not_measured(load.scenario, self.adapters[i + 1:],
                                                          stuck))
                        break
        finally:
            await loop.stop()
            await asyncio.to_thread(self.cluster.kubectl, "delete", "namespace", ns,
                                    "--wait=false", "--ignore-not-found", check=False)
        return {"name": load.scenario, "namespace": ns, "server": server,
                "endpoint_url": target.host + target.path,
                "waypoint_services": list(target.waypoint_services),
                "sampler_errors": loop.errors, "modes": results}

    async def run_mode(self, load: ScenarioLoad, mode: str, target: workloads.ScenarioTarget,
                       loadgen: LoadgenPod, loop: SamplingLoop, enrolled: bool,
                       sampler_reason: str | None,
                       baseline: dict[str, Any] | None = None, *,
                       adapter: MeshAdapter | None = None,
                       implementation: str | None = None,
                       ) -> tuple[dict[str, Any], modes.ModeState | None]:
        """One mode's result, and the state it was entered in (None if it was not)."""
        adapter = adapter or self.adapter
        mid = modes.mode_id(mode, implementation)
        where = f"{load.scenario}/{mid}"
        label = MODE_LABELS[mode] + (f" [{implementation}]" if implementation else "")
        result: dict[str, Any] = {"mode": mid, "label": label, "status": "ran",
                                  "implementation": adapter.name, "reason": None,
                                  "warnings": [], "steps": [], "max_throughput": None,
                                  "fault": None}
        fault = self.options.faults.by_mode.get(mode) if implementation is None else None
        if fault:
            result["fault"] = {"server_delay_ms": fault.delay_ms}
        try:
            state = await modes.enter(mode, adapter, self.cluster, target, enrolled=enrolled)
        except modes.ModeUnavailable as exc:
            self.say(f"{where}: skipped: {exc}")
            return {**result, "status": "skipped", "reason": str(exc)}, None
        except modes.ModeFailed as exc:
            self.say(f"{where}: FAILED: {exc}")
            return {**result, "status": "failed", "reason": str(exc)}, None
        result["warnings"].extend(state.warnings)
        for w in state.warnings:
            self.say(f"{where}: warning: {w}")
        refs = list(self.options.components)
        if state.waypoint:
            refs.append(comp.ComponentRef("waypoint", state.waypoint.namespace, "deployment",
                                          state.waypoint.deployment))
        refs.append(comp.ComponentRef("loadgen", target.namespace, "deployment",
                                      workloads.LOADGEN_NAME))
        pods, missing = await asyncio.to_thread(comp.resolve, self.cluster, refs)
        loop.set_targets(pods)
        self.say(f"{where}: measuring ({label})"
                 + (f", server delay {fault.delay_ms:g} ms injected" if fault else ""))
        path = (self.options.faults.path_for(mode, target.path) if implementation is None
                else target.path)
        steps = self.profile.rate_steps(load)
        if load.max_probe:
            steps += (self.profile.max_step(),)
        plan = self._plan(f"{load.scenario}-{mode}{'-' + implementation if implementation else ''}",
                          load.scenario, target.host, path, steps)
        records: list[dict[str, Any]] = []
        try:
            await loadgen.submit(plan)
            got = await loadgen.follow(plan, lambda r: self._on_record(where, r, len(steps)))
            records.extend(r for r in got if r["type"] == "step")
        except LoadgenError as exc:
            if mode == BASELINE_MODE and "unreachable" in str(exc):
                raise PerfError(f"{where}: {exc}") from exc
            self.say(f"{where}: FAILED: {exc}")
            return {**result, "status": "failed", "reason": str(exc)}, state
        if records and not sampler_reason:
            await loop.past(max(r["window"][1] for r in records))
        for record in records:
            usage = self._usage(loop, record, [r.component for r in refs], missing,
                                sampler_reason)
            step = step_result(record, usage, self.profile.rules)
            if step["kind"] == "max":
                result["max_throughput"] = step
            else:
                result["steps"].append(step)
        if state.waypoint:
            result["warnings"].extend(self._waypoint_check(result))
        if mode != BASELINE_MODE and not state.capture_confirmed and baseline:
            bypass = bypassed_ztunnel(result, baseline)
            if bypass:
                self.say(f"{where}: FAILED: {bypass}")
                return {**result, "status": "failed", "reason": bypass}, state
        return result, state

    # -- implementations ------------------------------------------------------------------

    async def _switch_to(self, adapter: MeshAdapter) -> None:
        """Make ``adapter``'s implementation the installed one (uninstalling another)."""
        if self.installed is adapter:
            return
        if self.installed is not None:
            gone = self.installed
            self.say(f"uninstalling {gone.name}")
            await asyncio.to_thread(gone.uninstall, self.cluster)
            self.installed = None
            await self._wait_components_gone(gone.root_namespace())
        self.say(f"installing {adapter.name} {self.versions.get(adapter.name, '')}".rstrip())
        await asyncio.to_thread(adapter.install, self.cluster)
        self.installed = adapter
        self.say(f"{adapter.name} installed")

    async def _wait_components_gone(self, namespace: str) -> None:
        """Wait until no pod is left in the uninstalled implementation's own namespace:
        the next implementation's ztunnel must not share the nodes, or the samples,
        with the last one's."""
        timeout = self.options.rollout_timeout_s
        result = await asyncio.to_thread(
            self.cluster.kubectl, "wait", "--for=delete", "pods", "--all", "-n", namespace,
            f"--timeout={int(timeout)}s", check=False, timeout=timeout + 10)
        if result.returncode != 0:
            raise PerfError(f"pods of the uninstalled implementation were still in "
                            f"{namespace} after {timeout:g}s: "
                            f"{(result.stderr or result.stdout).strip()}")

    async def _leave(self, state: modes.ModeState, adapter: MeshAdapter,
                     target: workloads.ScenarioTarget) -> str | None:
        """Release the scenario's pods; None when done, else why the next implementations
        cannot be measured on them."""
        try:
            warning = await modes.leave(state, adapter, self.cluster, target)
        except modes.ModeFailed as exc:
            self.say(f"{target.namespace}: FAILED: {exc}")
            return str(exc)
        if warning:
            self.say(f"{target.namespace}: warning: {warning}")
        else:
            self.say(f"{target.namespace}: released by {adapter.name}")
        return None

    def _not_measured(self, scenario: str, adapters: Sequence[MeshAdapter],
                      reason: str) -> list[dict[str, Any]]:
        """Failed entries for the mesh modes of implementations that never got the pods."""
        out = []
        for adapter in adapters:
            for mode in self.profile.modes:
                if mode == BASELINE_MODE:
                    continue
                out.append({"mode": modes.mode_id(mode, adapter.name),
                            "label": f"{MODE_LABELS[mode]} [{adapter.name}]",
                            "implementation": adapter.name, "status": "failed",
                            "reason": f"not measured: {reason}", "warnings": [], "steps": [],
                            "max_throughput": None, "fault": None})
                self.say(f"{scenario}/{modes.mode_id(mode, adapter.name)}: FAILED: "
                         "not measured, the pods were not released")
        return out

    # -- pieces -------------------------------------------------------------------------------

    def _plan(self, run_id: str, scenario: str, host: str, path: str,
              steps: tuple[Step, ...]) -> LoadPlan:
        suffix = uuid.uuid4().hex[:6]
        return LoadPlan(run_id=f"{run_id}-{suffix}", scenario=scenario, host=host, path=path,
                        steps=steps, processes=self.profile.loadgen_processes,
                        cooldown_s=self.profile.cooldown_s, start_delay_s=0.7)

    def _on_record(self, where: str, record: dict[str, Any], total: int) -> None:
        if record["type"] == "hello":
            self.loadgen_versions = {k: record.get(k) for k in ("locust", "python")}
            return
        if record["type"] != "step":
            return
        h = LatencyHistogram.from_json(record["histogram"])
        reasons = invalid_reasons(record, self.profile.rules)
        rps = record["requests"] / record["window_s"]
        what = (f"{record['target_rps']:g} req/s" if record["kind"] == "rate"
                else f"max ({record['users']} users, {record.get('processes', 1)} proc)")
        verdict = "ok" if not reasons else "INVALID: " + "; ".join(reasons)
        self.say(f"{where} step {record['index'] + 1}/{total} {what}: {rps:.1f} req/s "
                 f"p50 {h.percentile(50) if h.count else float('nan'):.2f} ms "
                 f"p99 {h.percentile(99) if h.count else float('nan'):.2f} ms "
                 f"errors {record['errors']} loadgen "
                 f"{record.get('loadgen_peak_process_cpu', 0):.2f} cores: {verdict}")

    def _usage(self, loop: SamplingLoop, record: dict[str, Any], names: list[str],
               missing: dict[str, str], sampler_reason: str | None) -> dict[str, dict[str, Any]]:
        w0, w1 = record["window"]
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            if sampler_reason:
                out[name] = {"available": False, "reason": sampler_reason}
            elif name in missing and not loop.targets.get(name):
                out[name] = {"available": False, "reason": missing[name]}
            else:
                out[name] = window_usage(loop.series.get(name, []), w0, w1,
                                         int(record["requests"]))
        return out

    @staticmethod
    def _waypoint_check(result: dict[str, Any]) -> list[str]:
        """A waypoint that burned no CPU under load was not in the path: say so."""
        busy = [s["components"].get("waypoint", {}).get("cpu_cores") for s in result["steps"]]
        busy = [b for b in busy if b is not None]
        if busy and max(busy) < 0.005:
            return ["the waypoint used almost no CPU under load: traffic may have bypassed it"]
        return []

    async def _rollout(self, namespace: str, deployments: list[str]) -> None:
        timeout = self.options.rollout_timeout_s
        for name in deployments:
            result = await asyncio.to_thread(
                self.cluster.kubectl, "rollout", "status", f"deployment/{name}", "-n",
                namespace, f"--timeout={int(timeout)}s", check=False, timeout=timeout + 10)
            if result.returncode != 0:
                raise PerfError(f"deployment {namespace}/{name} did not become ready within "
                                f"{timeout:g}s: {(result.stderr or result.stdout).strip()}")

    async def _pod_of(self, namespace: str, deployment: str) -> str:
        pod = await asyncio.to_thread(self.cluster.find_pod, namespace, f"deploy/{deployment}")
        return str(pod["metadata"]["name"])

    def document(self, started: float, ended: float, env: dict[str, Any],
                 scenarios: list[dict[str, Any]], sampler_reason: str | None) -> dict[str, Any]:
        p = self.profile
        clients = []
        for load, sc in zip(p.loads, scenarios, strict=True):
            clients.append({
                "internal": True, "load_generator": "locust", "protocol": "http",
                "connections": max([s.users for s in p.rate_steps(load)] + [p.max_probe_users]),
                "rps": max(load.rates), "endpoint_url": [sc["endpoint_url"]],
                "scenario": load.scenario,
            })
        doc: dict[str, Any] = {
            "smps_version": SMPS_VERSION,
            "schema": SCHEMA,
            "id": str(uuid.uuid4()),
            "name": f"ambient perf ({p.name}) {' vs '.join(a.name for a in self.adapters)}",
            "labels": {"profile": p.name, "adapter": self.adapter.name,
                       **({"also": ",".join(a.name for a in self.adapters[1:])}
                          if len(self.adapters) > 1 else {})},
            "start_time": _iso(started),
            "end_time": _iso(ended),
            "wall_time_s": None,
            "env": env,
            "mesh_config": {
                "mesh": "istio-ambient",
                "implementation": self.adapter.name,
                "version": self.versions.get(self.adapter.name) or self.adapter.version(),
                "implementations": [{"name": a.name, "version": self.versions.get(a.name),
                                     "modes": "" if i == 0 else f"@{a.name}"}
                                    for i, a in enumerate(self.adapters)],
                "mtls_enabled": True,
                "components": {c.component: c.text() for c in self.options.components},
            },
            "config": {
                "load_generator": "locust",
                "load_generator_version": self.loadgen_versions.get("locust"),
                "clients": clients,
                "duration_s": p.step_s,
                "profile": {
                    "name": p.name, "modes": list(p.modes), "step_s": p.step_s,
                    "warmup_s": p.warmup_s, "cooldown_s": p.cooldown_s,
                    "max_probe_s": p.max_probe_s, "per_user_rps": p.per_user_rps,
                    "max_probe_users": p.max_probe_users,
                    "loadgen_processes": p.loadgen_processes,
                    "rate_tolerance": p.rules.rate_tolerance,
                    "loadgen_cpu_limit": p.rules.loadgen_cpu_limit,
                    "sample_interval_s": p.sample_interval_s,
                    "scenarios": {ld.scenario: list(ld.rates) for ld in p.loads},
                },
                "latency_measure": ("Locust request event, float ms, from request start to "
                                    "response read; successful requests only; HDR-style "
                                    "histogram (1 us buckets below 1.024 ms, <0.1% above)"),
            },
            "resource_sampler": {"name": self.sampler.name,
                                 "description": self.sampler.description,
                                 "available": sampler_reason is None, "reason": sampler_reason},
            "scenarios": scenarios,
        }
        annotate_baseline(doc)
        doc["summary"] = summarize(doc)
        return doc
