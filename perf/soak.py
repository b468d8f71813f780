"""The soak benchmark: bounded load through L4 and L7 for minutes, then what grew.

``./run soak`` (``python -m perf.soak``) brings up a local cluster of its own, installs
the reference implementation, deploys Bookinfo with the walkthrough's clients in an
enrolled namespace and a waypoint for ``reviews``, and keeps two steady streams
going for ``--minutes`` (10 by default): ``sleep`` to ``ratings`` (L4, ztunnel only)
and ``notsleep`` to ``reviews`` (L7, through the waypoint), each at ``--rate``
requests a second, every request on a connection of its own, with the real curl in
the client pods (``conformance/traffic.py``: bounded by count and time, it stops by
itself).  It reads every mesh component's resident memory and open file descriptors
before and after (``perf.component_samplers.LocalProcSampler``: the processes of the
component's pods on this machine), prints a table and writes JSON, and calls out any
figure that grew by more than 10 %.

A benchmark, not a test: figures are printed, never asserted.  It exits non-zero
only when it could not run (the cluster, the mesh or the traffic failed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clusters.local.provider import LocalCluster
from clusters.provider import ClusterError
from conformance.adapters import AdapterError, load_adapter
from conformance.adapters.base import FLAVOUR_TODAY
from conformance.apps import AppNamespace
from conformance.traffic import SteadyTraffic, stats
from conformance.waiting import eventually
from perf.component_samplers import ComponentUsage, LocalProcSampler
from perf.components import ComponentRef, resolve, with_overrides

GROWTH_LIMIT = 0.10
"""Growth from start to end beyond which a figure is called out."""
STREAMS = {"l4": ("sleep", "http://ratings:9080/ratings/0"),
           "l7": ("notsleep", "http://reviews:9080/reviews/0")}


@dataclass(frozen=True)
class Growth:
    component: str
    figure: str
    start: float
    end: float

    @property
    def ratio(self) -> float | None:
        return (self.end - self.start) / self.start if self.start else None

    @property
    def called_out(self) -> bool:
        return self.ratio is not None and self.ratio > GROWTH_LIMIT

    def line(self) -> str:
        ratio = "n/a" if self.ratio is None else f"{self.ratio:+.1%}"
        mark = "  <-- grew more than 10 %" if self.called_out else ""
        unit = " MiB" if self.figure == "rss" else ""
        scale = 1 / (1 << 20) if self.figure == "rss" else 1
        return (f"  {self.component:<14} {self.figure:<9} {self.start * scale:>10.1f}{unit} -> "
                f"{self.end * scale:>10.1f}{unit}  {ratio}{mark}")


def growths(start: dict[str, ComponentUsage], end: dict[str, ComponentUsage]) -> list[Growth]:
    """RSS and open descriptors of every component sampled at both ends."""
    found = []
    for component in sorted(set(start) & set(end)):
        a, b = start[component], end[component]
        found.append(Growth(component, "rss", a.rss_bytes, b.rss_bytes))
        if a.open_fds is not None and b.open_fds is not None:
            found.append(Growth(component, "open_fds", a.open_fds, b.open_fds))
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m perf.soak", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="how long the load runs (default 10)")
    parser.add_argument("--rate", type=int, default=5,
                        help="requests a second in each of the two streams (default 5)")
    parser.add_argument("--out", type=Path, default=Path("reports/out/soak.json"),
                        help="where the JSON goes (default reports/out/soak.json)")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= 240:
        parser.error(f"--minutes must be above 0 and at most 240, not {args.minutes:g}")
    if not 1 <= args.rate <= 50:
        parser.error(f"--rate must be between 1 and 50, not {args.rate}")
    return args


def say(line: str) -> None:
    print(f"soak: {line}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.minutes * 60
    cluster = LocalCluster(f"soak-{os.getpid()}")
    say("bringing up a local cluster of 2 nodes")
    cluster.up()
    try:
        adapter = load_adapter("reference")
        say(f"installing {adapter.name} {adapter.version()}")
        adapter.install(cluster)
        ns = AppNamespace.create(cluster, adapter, "soak")
        ns.enroll()
        waypoint = ns.add_waypoint("waypoint", flavour=FLAVOUR_TODAY)
        ns.use_waypoint("service", "reviews", waypoint)
        for client, url in STREAMS.values():
            eventually(lambda c=client, u=url: ns.request(c, u), lambda r: r.status == 200,
                       what=f"{client} gets {url} answered", timeout=120)
        refs = with_overrides([ComponentRef("waypoint", ns.name, "deployment",
                                            waypoint.deployment)])
        pods, missing = resolve(cluster, refs)
        if missing:
            raise ClusterError(f"components not found: {missing}")
        sampler = LocalProcSampler(cluster.name)
        start = sampler.sample(pods, time.monotonic())
        say(f"load: {args.rate}/s in each of {', '.join(STREAMS)} for {args.minutes:g} min")
        traffic = {name: SteadyTraffic(ns, client, url, per_second=args.rate,
                                       batch=args.rate * 10, deadline_s=seconds,
                                       max_requests=int(args.rate * seconds))
                   for name, (client, url) in STREAMS.items()}
        began = time.monotonic()
        with contextlib.ExitStack() as running:
            for t in traffic.values():
                running.enter_context(t)
            while pending := [t for t in traffic.values() if not t.finished()]:
                if not pending[0].finished(within=30):
                    seen = {n: len(t.seen) for n, t in traffic.items()}
                    say(f"{time.monotonic() - began:5.0f}s: requests so far {seen}")
        end_pods, _ = resolve(cluster, refs)
        end = sampler.sample(end_pods, time.monotonic())
        restarted = sorted(c for c in pods if {p.uid for p in pods[c]} !=
                           {p.uid for p in end_pods.get(c, [])})
        return {
            "minutes": args.minutes, "rate_per_stream": args.rate,
            "streams": {n: _stream_figures(t) for n, t in traffic.items()},
            "components": {c: {"start": asdict(start[c]), "end": asdict(end[c])} for c in start},
            "growth": [{**asdict(g), "ratio": g.ratio, "called_out": g.called_out}
                       for g in growths(start, end)],
            "restarted": restarted,
        }
    finally:
        say("taking the cluster down")
        cluster.teardown()


def _stream_figures(traffic: SteadyTraffic) -> dict[str, Any]:
    figures = stats(traffic.seen)
    return {**asdict(figures), "failed": figures.failed, "success_rate": figures.success_rate}


def print_report(doc: dict[str, Any]) -> None:
    say(f"done: {doc['minutes']:g} min at {doc['rate_per_stream']}/s per stream")
    for name, s in doc["streams"].items():
        say(f"  {name}: {s['sent']} requests, {s['failed']} failed "
            f"({s['success_rate']:.2%} answered 200), error window {s['error_window_s']:.1f}s")
    say("component figures, start -> end:")
    for g in doc["growth"]:
        print(Growth(g["component"], g["figure"], g["start"], g["end"]).line(), flush=True)
    if doc["restarted"]:
        say(f"restarted during the run (figures not comparable): {', '.join(doc['restarted'])}")
    called = [g for g in doc["growth"] if g["called_out"]]
    say(f"{len(called)} figure(s) grew more than 10 %" if called else
        "no figure grew more than 10 %")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("soak: the local cluster needs root (network namespaces): run it as root",
              file=sys.stderr)
        return 2
    try:
        doc = run(args)
    except (ClusterError, AdapterError, AssertionError) as exc:
        print(f"soak: could not run: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print_report(doc)
    say(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
