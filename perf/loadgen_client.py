"""The runner's side of the load generator: submit a plan, follow its records.

Plans go in by exec (``curl`` to the agent on the pod's loopback, which no mesh
captures); results come out through the pod's log, read with the Kubernetes API,
which every cluster offers and which keeps what was written even if this reader
is slow.  Blocking cluster calls run in threads so the sampler keeps its pace.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perf import protocol
from perf.plan import LoadPlan

POLL_S = 0.25
FINISH_MARGIN_S = 30.0


class LoadgenError(Exception):
    """The load generator could not run a plan; the message says why."""


@dataclass
class LoadgenPod:
    cluster: Any
    namespace: str
    pod: str
    port: int

    async def submit(self, plan: LoadPlan) -> None:
        body = json.dumps(plan.to_json())
        argv = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body,
                f"http://127.0.0.1:{self.port}/runs"]
        result = await asyncio.to_thread(self.cluster.exec, self.namespace, self.pod, argv, 30)
        text = result.stdout.rstrip()
        answer, _, code = text.rpartition("\n")
        if result.exit_code != 0 or code != "202":
            raise LoadgenError(
                f"the load generator {self.namespace}/{self.pod} refused run {plan.run_id}: "
                f"exit {result.exit_code}, HTTP {code or '-'}: "
                f"{(answer or result.stderr).strip()[:500]}")

    async def follow(self, plan: LoadPlan,
                     on_record: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
        """Every record of ``plan``'s run, calling ``on_record`` for each as it appears;
        returns at ``done``, raises at ``error`` or when the run overstays its schedule
        (which starts once the agent says its workers are ready)."""
        budget = plan.expected_seconds() + FINISH_MARGIN_S
        deadline = time.monotonic() + protocol.READY_TIMEOUT_S + budget
        scheduled = False
        seen = 0
        last_text = ""
        while True:
            try:
                last_text = await asyncio.to_thread(self.cluster.logs, self.namespace, self.pod)
            except Exception as exc:  # a log read may fail transiently; the deadline bounds it
                last_text = last_text or f"(logs unavailable: {exc})"
            records = protocol.for_run(protocol.decode(last_text.splitlines()), plan.run_id)
            for record in records[seen:]:
                if record["type"] == protocol.READY and not scheduled:
                    scheduled, deadline = True, time.monotonic() + budget
                on_record(record)
                if record["type"] == protocol.ERROR:
                    raise LoadgenError(record.get("message") or "the load generator failed")
            seen = len(records)
            if records and records[-1]["type"] == protocol.DONE:
                return records
            if time.monotonic() > deadline:
                tail = "\n".join(last_text.splitlines()[-10:])
                when = (f"within {budget:.0f}s of its start" if scheduled else
                        f"its workers were not ready in {protocol.READY_TIMEOUT_S:.0f}s")
                raise LoadgenError(f"run {plan.run_id} did not finish: {when}; the load "
                                   f"generator's log ends with:\n{tail}")
            await asyncio.sleep(POLL_S)
