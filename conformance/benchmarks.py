"""Benchmarks of the suite's own computations: ``python -m conformance.benchmarks``.

Prints figures, asserts nothing (speed is a benchmark's, never a test's).  The
traffic-split sample size is searched once per split a test samples; its cost adds
to every such test, so it is worth watching as ``conformance/stats.py`` changes.
"""

from __future__ import annotations

import argparse
import statistics
import time

from conformance import stats

SPLITS = {"90/10": {"a": 90, "b": 10}, "80/20": {"a": 80, "b": 20},
          "50/50": {"a": 50, "b": 50}, "50/30/20": {"a": 50, "b": 30, "c": 20}}


def bench_sample_size(rounds: int) -> None:
    for label, weights in SPLITS.items():
        times, n = [], 0
        for i in range(rounds):
            t0 = time.perf_counter()
            # a max_n of its own per round: the search itself, never a cached answer
            n = stats.sample_size(weights, max_n=50_000 + i)
            times.append(time.perf_counter() - t0)
        print(f"traffic-split sample size {label}: n = {n}, search median "
              f"{statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms "
              f"({rounds} rounds, uncached)")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m conformance.benchmarks")
    parser.add_argument("--rounds", type=int, default=5)
    bench_sample_size(parser.parse_args().rounds)


if __name__ == "__main__":
    main()
