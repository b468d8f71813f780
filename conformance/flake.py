"""The flake budget: run the main job N times in a row and count what failed.

``python -m conformance.flake [--runs 20] [--out DIR] [-- extra pytest args]`` (or
``./run flake``) runs ``pytest conformance/suite -n 2 --dist loadgroup`` as the
main job does, each time fresh (its own cluster, its reports in
``DIR/run-NN/``), then prints every failure with its run, test and message, and the
flake rate: failed runs out of runs, and failed tests out of tests run.  A run that
exits non-zero without a failed test (the cluster could not start, a test skipped
for a reason other than an unclaimed feature, nothing ran) counts as a failed run,
with the reason the run gave.  Exits 1 if anything failed, so a budget of zero
failures is a gate too.

Why a separate tool: a test that passes 19 times in 20 passes most CI runs and hides
a bug or a race; only repetition shows it, and only each failure's message says
whether it is the implementation, the suite or the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = 20
DEFAULT_OUT = REPO_ROOT / "reports" / "out" / "flake"
RUN_TIMEOUT_S = 3600.0
"""A run still going after an hour is stopped (SIGTERM, then SIGKILL) and counted failed."""
MAIN_JOB = ["conformance/suite", "-n", "2", "--dist", "loadgroup"]
"""The main job's pytest arguments, as tox.ini's ``conformance`` environment has them."""


@dataclass
class Failure:
    run: int
    test: str
    message: str


@dataclass
class RunResult:
    run: int
    exit_status: int
    seconds: float
    tests: int = 0
    failed: list[Failure] = field(default_factory=list)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.failed


def junit_outcomes(path: Path, run: int) -> tuple[int, list[Failure]]:
    """Tests that ran (passed or failed, not skipped) and the failures, from a JUnit file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return 0, []
    ran, failures = 0, []
    for case in root.iter("testcase"):
        test = "::".join(p for p in (case.get("classname"), case.get("name")) if p)
        bad = [c for c in case if c.tag in ("failure", "error")]
        if case.find("skipped") is not None and not bad:
            continue
        ran += 1
        for element in bad:
            text = element.get("message") or (element.text or "").strip() or element.tag
            label = "error: " if element.tag == "error" else ""
            failures.append(Failure(run, test, label + text.strip().splitlines()[0][:400]))
    return ran, failures


def run_reason(report_dir: Path, output: Path) -> str:
    """Why the run exited as it did: the conformance report's exitReason, else the
    output's last line."""
    report = report_dir / "conformance-report.yaml"
    try:
        reason = yaml.safe_load(report.read_text()).get("exitReason")
        if reason:
            return str(reason)
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    try:
        lines = output.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1] if lines else "no output"


def run_once(index: int, out: Path, extra: list[str]) -> RunResult:
    report_dir = out / f"run-{index:02d}"
    report_dir.mkdir(parents=True, exist_ok=True)
    output = report_dir / "output.log"
    cmd = [sys.executable, "-m", "pytest", *MAIN_JOB, "-p", "no:cacheprovider",
           "--report-dir", str(report_dir), *extra]
    started = time.monotonic()
    with output.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            status = proc.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # pytest tears its cluster down
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            status = -1
    seconds = time.monotonic() - started
    tests, failed = junit_outcomes(report_dir / "junit.xml", index)
    result = RunResult(index, status, seconds, tests, failed)
    if status == -1:
        result.reason = f"still running after {RUN_TIMEOUT_S:.0f}s; stopped"
    elif status != 0:
        result.reason = run_reason(report_dir, output)
    return result


def summary_lines(results: list[RunResult]) -> list[str]:
    runs = len(results)
    failed_runs = [r for r in results if not r.ok]
    tests = sum(r.tests for r in results)
    failures = [f for r in results for f in r.failed]
    lines = [f"flake budget: {len(failed_runs)} of {runs} runs failed "
             f"({len(failed_runs) / runs:.1%}); {len(failures)} of {tests} tests run failed "
             f"({len(failures) / tests if tests else 0:.2%})"]
    if failures:
        lines.append("failures:")
        lines.extend(f"  run {f.run:02d}: {f.test}: {f.message}" for f in failures)
        lines.append("by test:")
        for test, n in Counter(f.test for f in failures).most_common():
            lines.append(f"  {n}/{runs} runs: {test}")
    for r in failed_runs:
        if r.reason:
            lines.append(f"  run {r.run:02d} exited {r.exit_status}: {r.reason}")
    walls = sorted(r.seconds for r in results)
    lines.append(f"wall time per run: min {walls[0]:.0f}s, median {walls[len(walls) // 2]:.0f}s, "
                 f"max {walls[-1]:.0f}s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.flake",
        description="Run the main job N times; report every failure and the flake rate.")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                        help=f"how many runs (default {DEFAULT_RUNS})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for each run's reports and the summary (flake.json)")
    parser.add_argument("pytest_args", nargs="*",
                        help="extra arguments for every run's pytest (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if os.geteuid() != 0:
        print("flake: note: not root, so the local cluster cannot start and every run "
              "will fail saying so", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    for index in range(1, args.runs + 1):
        result = run_once(index, args.out, args.pytest_args)
        results.append(result)
        verdict = "ok" if result.ok else f"FAILED ({len(result.failed)} tests)"
        print(f"flake: run {index}/{args.runs}: exit {result.exit_status}, {result.tests} "
              f"tests ran, {verdict}, {result.seconds:.0f}s", flush=True)
        for failure in result.failed:
            print(f"    {failure.test}: {failure.message}", flush=True)
        if result.reason:
            print(f"    {result.reason}", flush=True)
    lines = summary_lines(results)
    print("\n".join(lines))
    doc: dict[str, Any] = {"runs": [asdict(r) | {"ok": r.ok} for r in results],
                           "summary": lines}
    (args.out / "flake.json").write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
