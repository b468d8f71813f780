"""Component samplers: metrics-API quantities, and the local sampler on real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perf.component_samplers import (
    LocalProcSampler,
    parse_cpu_quantity,
    parse_memory_quantity,
)
from perf.components import PodRef


@pytest.mark.parametrize(("text", "cores"), [("250m", 0.25), ("1", 1.0), ("12345678n", 0.012345678),
                                             ("500u", 0.0005)])
def test_cpu_quantities(text: str, cores: float) -> None:
    assert parse_cpu_quantity(text) == pytest.approx(cores, rel=1e-3)


@pytest.mark.parametrize(("text", "size"), [("64Mi", 64 * 2**20), ("1000Ki", 1024000),
                                            ("1G", 10**9), ("123", 123)])
def test_memory_quantities(text: str, size: int) -> None:
    assert parse_memory_quantity(text) == size


def test_local_sampler_finds_a_pods_processes_by_netns_and_pod_name(tmp_path: Path) -> None:
    """A child process tagged AH_POD_NAME=busy in this network namespace stands in for a
    container; ``pod-<uid>`` links to this namespace as /run/netns/pod-<uid> would.

    Nothing here depends on how fast this machine is: the children run until killed,
    the test waits for the busy one's CPU to be seen growing (a condition), and its CPU
    is checked against the wall time that passed, which one thread cannot exceed."""
    netns = tmp_path / "netns"
    netns.mkdir()
    (netns / "pod-u1").symlink_to(f"/proc/{os.getpid()}/ns/net")
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                            env={**os.environ, "AH_POD_NAME": "busy"})
    other = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"],
                             env={**os.environ, "AH_POD_NAME": "busy-1"})
    tick = 1 / os.sysconf("SC_CLK_TCK")  # /proc counts CPU in clock ticks
    try:
        sampler = LocalProcSampler("test", netns_dir=netns)
        pods = {"busy": [PodRef("ns", "busy", "u1", "node-1")],
                "gone": [PodRef("ns", "gone", "u2", "node-1")]}
        started = time.monotonic()
        first = sampler.sample(pods, time.time())
        second = first
        while second["busy"].cpu_s < first["busy"].cpu_s + 10 * tick:
            assert time.monotonic() - started < 120, "the busy loop got no CPU in 120 s"
            time.sleep(0.05)
            second = sampler.sample(pods, time.time())
        wall = time.monotonic() - started
    finally:
        proc.kill()
        other.kill()
        proc.wait()
        other.wait()
    assert first["busy"].processes == 1 and first["busy"].pods == 1
    assert second["busy"].processes == 1  # the other process's pod name only starts with this one's
    # bytes, not pages or KiB: a running interpreter holds more than a MiB (read once it
    # ran; the first sample may catch the child before its exec of Python is done)
    assert second["busy"].rss_bytes > 1 << 20
    # CPU seconds, not ticks or nanoseconds: one thread's CPU never exceeds the wall time
    # (plus a tick of rounding at each end)
    assert second["busy"].cpu_s - first["busy"].cpu_s <= wall + 2 * tick
    assert second["gone"].pods == 0 and second["gone"].cpu_s == 0
    third = sampler.sample(pods, time.time())
    assert third["busy"].processes == 0
    assert third["busy"].cpu_s >= second["busy"].cpu_s  # an exited process's CPU stays counted
