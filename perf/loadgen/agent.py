"""The load generator pod's main process: accept a plan, run Locust, log the results.

The pod is created once per scenario and stays while the runner switches the
namespace between modes, so the mesh captures it the way it captures any running
workload.  Each submitted plan runs in fresh worker processes (a fresh Locust and
gevent per run) that are children of this process, so the pod's processes are
exactly what the resource sampler attributes to the load generator.

Endpoints (on 127.0.0.1-reachable ``--port``; the runner reaches them by exec):

- ``POST /runs`` with a plan as JSON: 202 and the run starts; 400 for a bad plan;
  409 while another run is going.
- ``GET /runs/<run_id>``: the records emitted so far (also written to stdout).
- ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from importlib import metadata
from typing import Any

import aiohttp
from aiohttp import web

from perf import protocol
from perf.plan import LoadPlan, PlanError, split_plan

from .serving import serve_until_signalled

PREFLIGHT_ATTEMPTS = 5
RUN_MARGIN_S = 30.0
"""A worker still running this long after its schedule ended is killed: loads are bounded."""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class Agent:
    def __init__(self) -> None:
        self.runs: dict[str, list[dict[str, Any]]] = {}
        self.active: asyncio.Task[None] | None = None

    def emit(self, record: dict[str, Any]) -> None:
        self.runs.setdefault(record["run_id"], []).append(record)
        print(protocol.encode(record), flush=True)

    # -- HTTP ---------------------------------------------------------------------------

    async def submit(self, request: web.Request) -> web.Response:
        try:
            plan = LoadPlan.from_json(await request.json())
        except (ValueError, PlanError) as exc:
            return web.json_response({"error": f"bad plan: {exc}"}, status=400)
        if self.active is not None and not self.active.done():
            return web.json_response({"error": "a run is already going"}, status=409)
        if plan.run_id in self.runs:
            return web.json_response({"error": f"run {plan.run_id} already ran"}, status=409)
        self.runs[plan.run_id] = []
        self.active = asyncio.create_task(self.run(plan))
        return web.json_response({"run_id": plan.run_id}, status=202)

    async def records(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        if run_id not in self.runs:
            return web.json_response({"error": f"no run {run_id}"}, status=404)
        return web.json_response(self.runs[run_id])

    # -- a run --------------------------------------------------------------------------

    async def run(self, plan: LoadPlan) -> None:
        try:
            self.emit({"type": protocol.HELLO, "run_id": plan.run_id, "pod": os.uname().nodename,
                       "locust": _version("locust"), "python": sys.version.split()[0],
                       "processes": plan.processes})
            problem = await preflight(plan)
            if problem:
                self.emit({"type": protocol.ERROR, "run_id": plan.run_id, "message": problem})
                return
            await self.run_workers(plan)
        except Exception as exc:  # reported, never lost: the runner waits for a record
            self.emit({"type": protocol.ERROR, "run_id": plan.run_id,
                       "message": f"load generator failed: {type(exc).__name__}: {exc}"})
        else:
            self.emit({"type": protocol.DONE, "run_id": plan.run_id})

    async def run_workers(self, plan: LoadPlan) -> None:
        parts = split_plan(plan)
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "perf.loadgen", "worker", "--plan", json.dumps(p.to_json()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            for p in parts]
        pending: dict[int, list[dict[str, Any]]] = {}
        stderr_tails: list[list[str]] = [[] for _ in procs]

        async def read_stdout(proc: asyncio.subprocess.Process) -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                for record in protocol.decode([raw.decode(errors="replace")]):
                    if record.get("type") != protocol.STEP:
                        continue
                    group = pending.setdefault(int(record["index"]), [])
                    group.append(record)
                    if len(group) == len(procs):
                        self.emit(protocol.merge_steps(pending.pop(int(record["index"]))))

        async def read_stderr(proc: asyncio.subprocess.Process, tail: list[str]) -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                sys.stderr.write(f"[worker {proc.pid}] {line}\n")
                tail.append(line)
                del tail[:-20]

        stderr_readers = [asyncio.ensure_future(read_stderr(p, t))
                          for p, t in zip(procs, stderr_tails, strict=True)]
        try:
            # The schedule starts once every worker has imported Locust (seconds on a busy
            # machine): a fixed delay from spawning would let a slow import eat the first
            # step's window, which would then count no request at all.
            try:
                await asyncio.wait_for(asyncio.gather(*(_ready(p) for p in procs)),
                                       protocol.READY_TIMEOUT_S)
            except TimeoutError:
                raise RuntimeError(f"load generator workers not ready "
                                   f"{protocol.READY_TIMEOUT_S:.0f}s after start; killed") from None
            except NotReady as exc:
                index = procs.index(exc.proc)
                await stderr_readers[index]  # it exited: its stderr is at its end
                raise RuntimeError(f"{exc}: " + " | ".join(stderr_tails[index][-5:])) \
                    from None
            start_at = time.time() + plan.start_delay_s
            self.emit({"type": protocol.READY, "run_id": plan.run_id, "start_at": start_at})
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(f"{start_at!r}\n".encode())
                await p.stdin.drain()
                p.stdin.close()
            deadline = plan.expected_seconds() + RUN_MARGIN_S
            readers = [asyncio.gather(read_stdout(p), p.wait()) for p in procs]
            try:
                await asyncio.wait_for(asyncio.gather(*readers, *stderr_readers), deadline)
            except TimeoutError:
                raise RuntimeError(f"workers still running {deadline:.0f}s after start; "
                                   "killed") from None
        finally:
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    await p.wait()
            for reader in stderr_readers:
                reader.cancel()
        failed = [(p, t) for p, t in zip(procs, stderr_tails, strict=True) if p.returncode]
        if failed:
            proc, tail = failed[0]
            raise RuntimeError(f"worker exited with {proc.returncode}: " + " | ".join(tail[-5:]))
        if pending:
            raise RuntimeError(f"steps {sorted(pending)} were not reported by every worker")


class NotReady(Exception):
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        super().__init__(f"load generator worker exited with {proc.returncode} before it "
                         "was ready")
        self.proc = proc


async def _ready(proc: asyncio.subprocess.Process) -> None:
    """Wait for a worker's ``ready`` record on its stdout; raise :class:`NotReady` if it
    exits first."""
    assert proc.stdout is not None
    async for raw in proc.stdout:
        records = protocol.decode([raw.decode(errors="replace")])
        if any(r.get("type") == protocol.READY for r in records):
            return
    await proc.wait()
    raise NotReady(proc)


async def preflight(plan: LoadPlan) -> str | None:
    """Why the target cannot be reached from this pod, or None once one request succeeds.

    A few tries, because a freshly enrolled or re-routed workload may refuse the first
    connection; then a message that names the URL and the error, so "unreachable" is
    never mistaken for "slow".
    """
    url = plan.host.rstrip("/") + plan.path
    timeout = aiohttp.ClientTimeout(total=plan.request_timeout_s)
    last = ""
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempt in range(PREFLIGHT_ATTEMPTS):
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status < 500:
                        return None
                    last = f"HTTP {resp.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            await asyncio.sleep(0.2 * (attempt + 1))
    return (f"target {url} is unreachable from the load generator pod "
            f"{os.uname().nodename} after {PREFLIGHT_ATTEMPTS} tries: {last}")


async def serve(port: int, host: str = "0.0.0.0") -> None:
    agent = Agent()
    app = web.Application()
    app.router.add_post("/runs", agent.submit)
    app.router.add_get("/runs/{run_id}", agent.records)
    app.router.add_get("/healthz", lambda _r: _ok())

    async def cancel_active() -> None:
        if agent.active is not None:
            agent.active.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await agent.active

    await serve_until_signalled(app, host, port, cancel_active)


async def _ok() -> web.Response:
    return web.Response(text="ok\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m perf.loadgen agent")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.host))
