"""``python -m perf``: run a profile, compare two results, check gates, re-render a report.

Exit codes: 0 fine, 1 a gate failed or a regression was found, 2 the run could
not be done (bad input, unreachable target, cluster trouble) with the reason on
stderr, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from perf.compare import compare
from perf.gates import Gates, evaluate
from perf.plan import MODES, Fault, Faults, PlanError

DEFAULT_OUT = Path("reports/out/perf")


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SystemExit(f"perf: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SystemExit(f"perf: {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "scenarios" not in doc:
        raise SystemExit(f"perf: {path} is not a perf result document (no 'scenarios')")
    return doc


def parse_faults(items: list[str]) -> Faults:
    """``--inject-delay-ms l4=20``: the server delays each request of that mode by 20 ms."""
    by_mode: dict[str, Fault] = {}
    for item in items:
        mode, sep, value = item.partition("=")
        if not sep or mode not in MODES:
            raise PlanError(f"--inject-delay-ms {item!r}: expected MODE=MS with MODE one of "
                            f"{', '.join(MODES)}")
        try:
            by_mode[mode] = Fault(float(value))
        except ValueError:
            raise PlanError(f"--inject-delay-ms {item!r}: {value!r} is not a number") from None
    return Faults(by_mode)


def _gate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-p99-overhead-ms", type=float, default=None,
                        help="fail if a mesh mode's p99 exceeds no-mesh p99 by more than this")
    parser.add_argument("--max-error-rate", type=float, default=0.01)
    parser.add_argument("--min-throughput-ratio", type=float, default=None,
                        help="fail if a mesh mode's max throughput is below this fraction of "
                             "no-mesh")


def _gates(args: argparse.Namespace) -> Gates:
    return Gates(max_p99_overhead_ms=args.max_p99_overhead_ms,
                 max_error_rate=args.max_error_rate,
                 min_throughput_ratio=args.min_throughput_ratio)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m perf", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a profile on a fresh local cluster")
    run.add_argument("--profile", default="full", help="short or full (default: full)")
    run.add_argument("--adapter", action="append", default=None,
                     help="mesh adapter: a built-in name or a declarative YAML file "
                          "(default: reference); give it again to measure another "
                          "implementation on the same pods, e.g. --adapter reference "
                          "--adapter istio")
    run.add_argument("--image-exec", action="append", default=[], metavar="IMAGE=EXE|FILE",
                     help="run an image as an executable of this machine on the local "
                          "cluster (a real implementation built from source); repeatable")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT)
    run.add_argument("--modes", default=None, help="comma-separated subset of none,l4,l7")
    run.add_argument("--component", action="append", default=[],
                     help="override where a component runs: name=namespace/kind/workload")
    run.add_argument("--inject-delay-ms", action="append", default=[], metavar="MODE=MS",
                     help="fault injection: the server delays each request of MODE by MS")
    run.add_argument("--compare-to", type=Path, default=None,
                     help="a previous result: report regressions against it")
    run.add_argument("--threshold", type=float, default=0.10)
    _gate_args(run)
    cmp_ = sub.add_parser("compare", help="flag regressions of a result against a previous one")
    cmp_.add_argument("current", type=Path)
    cmp_.add_argument("previous", type=Path)
    cmp_.add_argument("--threshold", type=float, default=0.10,
                      help="relative change counted as a regression (default 0.10)")
    check = sub.add_parser("check", help="evaluate SLO gates over a result file")
    check.add_argument("result", type=Path)
    _gate_args(check)
    report = sub.add_parser("report", help="render a result file as HTML")
    report.add_argument("result", type=Path)
    report.add_argument("--out", type=Path, default=None)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from perf.components import parse_component, with_overrides
    from perf.profiles import get_profile
    from perf.runner import RunOptions
    from perf.session import run_local, write_outputs

    profile = get_profile(args.profile)
    if args.modes:
        profile = profile.replace(modes=tuple(m.strip() for m in args.modes.split(",")))
    options = RunOptions(profile=profile,
                         components=with_overrides(parse_component(c) for c in args.component),
                         faults=parse_faults(args.inject_delay_ms))
    doc = run_local(options, args.adapter or ["reference"],
                    image_executables=args.image_exec)
    report = evaluate(doc, _gates(args))
    json_path, html_path = write_outputs(doc, args.out, gates=report)
    print(f"perf: wrote {json_path} and {html_path} ({doc['wall_time_s']:.1f}s wall)",
          file=sys.stderr)
    print(report.text(), file=sys.stderr)
    status = 0 if report.passed else 1
    if args.compare_to:
        result = compare(doc, _load(args.compare_to), threshold=args.threshold)
        print(result.text(), file=sys.stderr)
        status = status or (1 if result.regressed else 0)
    return status


def main(argv: list[str] | None = None) -> int:
    from conformance.adapters import AdapterError
    from perf.runner import PerfError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compare":
            result = compare(_load(args.current), _load(args.previous), threshold=args.threshold)
            print(result.text())
            return 1 if result.regressed else 0
        if args.command == "check":
            report = evaluate(_load(args.result), _gates(args))
            print(report.text())
            return 0 if report.passed else 1
        if args.command == "report":
            from perf.report_html import render

            out = args.out or args.result.with_suffix(".html")
            out.write_text(render(_load(args.result)))
            print(out)
            return 0
    except (PerfError, PlanError, AdapterError, ValueError) as exc:
        print(f"perf: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perf: interrupted; the cluster was torn down", file=sys.stderr)
        return 130
    return 2
