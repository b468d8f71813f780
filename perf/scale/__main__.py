"""``python -m perf.scale [--sizes 100,500,1000] [--changes 20]``: the control-plane scale
benchmark (issue 7, item 5).  Progress goes to stderr, the table to stdout, the whole
report to ``reports/out/perf/scale.json``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .population import Layout
from .report import table, write_json
from .runner import DEFAULT_OUT, BenchmarkError, Config, ScaleRun


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes are pod counts separated by commas: {text!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print, write; exit 1 if the run could not finish (the goal's verdict is
    reported, not turned into an exit code: a benchmark measures, tests assert)."""
    parser = argparse.ArgumentParser(prog="python -m perf.scale", description=__doc__)
    parser.add_argument("--sizes", type=_sizes, default=[100, 500, 1000],
                        help="fake pod counts to measure at, in order (default 100,500,1000)")
    parser.add_argument("--changes", type=int, default=20,
                        help="policy changes per size (default 20)")
    parser.add_argument("--pods-per-service", type=int, default=10,
                        help="fake pods behind each Service (default 10)")
    parser.add_argument("--pods-per-namespace", type=int, default=100,
                        help="fake pods per enrolled namespace (default 100)")
    parser.add_argument("--nodes", type=int, default=2, help="nodes with agents (default 2)")
    parser.add_argument("--adapter", default="reference",
                        help="mesh adapter (default reference; the syncz observer reads "
                             "the reference control plane's /debug/syncz format)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds a change may take before it counts as missed")
    parser.add_argument("--probe-interval", type=float, default=0.02,
                        help="pause between data-path probes per server (s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--profile", type=Path, nargs="?", const=DEFAULT_OUT.parent,
                        default=None, metavar="DIR",
                        help="record the control plane with py-spy during each size's changes "
                             "(raw stacks in DIR, default next to the report)")
    args = parser.parse_args(argv)
    try:
        config = Config(sizes=args.sizes, changes=args.changes,
                        layout=Layout(args.pods_per_service, args.pods_per_namespace),
                        nodes=args.nodes, adapter=args.adapter, change_timeout=args.timeout,
                        probe_interval=args.probe_interval, profile_dir=args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        report = ScaleRun(config).run()
    except BenchmarkError as exc:
        print(f"perf.scale: {exc}", file=sys.stderr)
        return 1
    path = write_json(report, args.out)
    print(table(report))
    print(f"\nreport: {path} (wall {report['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
