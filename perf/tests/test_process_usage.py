"""Reading processes: the figures' meaning, and finding a pod's processes on real /proc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from perf.process_usage import (
    cpu_and_rss,
    parse_status,
    pod_pids,
    pod_usage,
    process_usage,
)

TICK = 1 / os.sysconf("SC_CLK_TCK")  # /proc counts CPU in clock ticks


def test_parse_status() -> None:
    status = parse_status("Name:\tpython\nVmHWM:\t  120000 kB\nVmRSS:\t  100000 kB\nThreads:\t3\n")
    assert status == {"VmHWM": 120000, "VmRSS": 100000}


def test_cpu_is_the_process_own_user_plus_system_not_its_children() -> None:
    """A child that burned 0.2 s and was waited for counts in os.times()'s children
    figures; this process's CPU is its own user + system time only, as before."""
    subprocess.run([sys.executable, "-c", "import time\nwhile time.process_time() < 0.2: pass"],
                   check=True, timeout=120)
    before = os.times()
    cpu, rss = cpu_and_rss(psutil.Process())
    after = os.times()
    assert before.children_user + before.children_system >= 0.2 - 2 * TICK
    assert before.user + before.system - TICK <= cpu <= after.user + after.system + TICK
    # RSS in bytes, the counter /proc/<pid>/status calls VmRSS (read a moment apart)
    vm_rss = parse_status(Path(f"/proc/{os.getpid()}/status").read_text())["VmRSS"] * 1024
    assert abs(rss - vm_rss) < 4 << 20


def test_pod_pids_finds_a_process_by_its_environment_and_netns() -> None:
    """A child started with AH_POD_NAME is found, by exact name and by network
    namespace, and only it."""
    name = f"perf-process-usage-test-{os.getpid()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             env={**os.environ, "AH_POD_NAME": name})
    try:
        netns = Path(f"/proc/{child.pid}/ns/net")
        assert pod_pids(name) == [child.pid]
        assert pod_pids(name, netns) == [child.pid]
        assert pod_pids(name + "-other") == []
        assert pod_pids(name[:-1]) == []  # a prefix of the name is another pod
        usage = pod_usage(name, netns)
        assert usage is not None and usage.pid == child.pid
        assert usage.rss_bytes > 1 << 20 and usage.peak_rss_bytes >= usage.rss_bytes
        assert 0 <= usage.cpu_seconds < 30
    finally:
        child.kill()
        child.wait()
    assert process_usage(child.pid) is None
    assert pod_usage(name) is None


def test_process_usage_of_this_process() -> None:
    usage = process_usage(os.getpid())
    assert usage is not None and usage.pid == os.getpid()
    assert usage.peak_rss_bytes >= usage.rss_bytes > 1 << 20 and usage.cpu_seconds > 0
