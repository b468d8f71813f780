"""The load generator's agent, workers and echo server as processes on loopback only.

No cluster: the same programs the ``ambient-harness/locust`` image runs, talking to
127.0.0.1, so the Locust side (fresh Environment per step, request-event latencies,
windows, merge across two processes, fault injection, preflight) is exercised in
seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perf import protocol
from perf.histogram import LatencyHistogram
from perf.plan import LoadPlan, Step

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # only stops a hang: a start takes seconds at most
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the process exited before listening"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    echo_port, agent_port = free_port(), free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "perf.loadgen", "echo", "--host",
                               "127.0.0.1", "--port", str(echo_port)], env=env),
             subprocess.Popen([sys.executable, "-m", "perf.loadgen", "agent", "--host",
                               "127.0.0.1", "--port", str(agent_port)], env=env,
                              stdout=subprocess.DEVNULL)]
    try:
        wait_listening(echo_port, procs[0])
        wait_listening(agent_port, procs[1])
        yield echo_port, agent_port
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def run(agent_port: int, plan: LoadPlan) -> list[dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{agent_port}/runs",
                                 data=json.dumps(plan.to_json()).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
    # as the runner's reader does: the schedule starts once the workers are ready
    deadline = time.monotonic() + protocol.READY_TIMEOUT_S + plan.expected_seconds() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/runs/{plan.run_id}",
                                    timeout=10) as resp:
            records: list[dict[str, Any]] = json.loads(resp.read())
        if records and records[-1]["type"] in ("done", "error"):
            return records
        time.sleep(0.2)
    raise AssertionError(f"run {plan.run_id} did not finish")


def test_paced_steps_across_two_processes_with_an_injected_delay(servers: tuple[int, int]) \
        -> None:
    echo_port, agent_port = servers
    plan = LoadPlan(run_id="paced", scenario="direct", host=f"http://127.0.0.1:{echo_port}",
                    path="/?delay_ms=15", processes=2, start_delay_s=0.7,
                    steps=(Step("rate", 5, 0.5, 1.5, 50.0), Step("max", 4, 0.3, 0.7)))
    submitted = time.time()
    records = run(agent_port, plan)
    assert [r["type"] for r in records] == ["hello", "ready", "step", "step", "done"], \
        records[-1]
    ready, rate, peak = records[1], records[2], records[3]
    # The schedule starts once both workers are ready, however long their start took.
    assert ready["start_at"] > submitted
    assert rate["window"][0] == ready["start_at"] + 0.5  # then the warm-up
    assert rate["processes"] == 2 and rate["users"] == 5 and rate["target_rps"] == 50
    # Paced: never above 50 req/s x 1.5 s (plus a request in flight per user at the
    # window's edge).  How close it comes is the machine's load, which a step's validity
    # reports; a test does not assert it.
    assert 0 < rate["requests"] <= 75 + 5 and rate["errors"] == 0
    h = LatencyHistogram.from_json(rate["histogram"])
    assert h.count == rate["requests"]
    assert h.percentile(50) >= 15.0  # the server's delay is on the wire
    assert peak["kind"] == "max" and peak["requests"] > 0


def test_unreachable_target_is_reported_by_name(servers: tuple[int, int]) -> None:
    _, agent_port = servers
    dead = free_port()
    plan = LoadPlan(run_id="dead", scenario="direct", host=f"http://127.0.0.1:{dead}",
                    steps=(Step("rate", 1, 0, 1, 10.0),), request_timeout_s=1)
    records = run(agent_port, plan)
    assert records[-1]["type"] == "error"
    assert f"target http://127.0.0.1:{dead}/ is unreachable" in records[-1]["message"]


def test_a_bad_plan_is_refused_with_the_field_named(servers: tuple[int, int]) -> None:
    _, agent_port = servers
    req = urllib.request.Request(f"http://127.0.0.1:{agent_port}/runs",
                                 data=b'{"run_id": "x", "scenario": "direct"}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert "bad plan" in err.value.read().decode()
