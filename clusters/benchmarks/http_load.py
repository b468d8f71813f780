"""A bounded keep-alive HTTP load loop: ``python -m clusters.benchmarks.http_load URL``.

Run inside a pod (through the provider's exec) to measure what a client in the
cluster gets.  It stops after ``--seconds`` or ``--max-requests``, whichever comes
first, and prints one JSON line of results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def run(url: str, seconds: float, concurrency: int, max_requests: int,
              rate: float | None = None) -> dict:
    """Closed loop (as fast as ``concurrency`` connections go) or, with ``rate``, an
    open loop: request i is due at start + i/rate, and its latency counts from when it
    was due, so a slow server cannot hide its delay by slowing the client down."""
    latencies: list[float] = []
    errors = 0
    begin = time.perf_counter()
    deadline = begin + seconds
    budget = [max_requests]
    issued = [0]

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            if rate:
                due = begin + issued[0] / rate
                issued[0] += 1
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing: the request is not due yet
                t0 = due
            else:
                t0 = time.perf_counter()
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status >= 400:
                        errors += 1
            except (aiohttp.ClientError, OSError):
                errors += 1
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 if ordered \
            else float("nan")

    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1), "p50_ms": round(pct(50), 3),
            "p99_ms": round(pct(99), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m clusters.benchmarks.http_load")
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=None,
                        help="requests per second (open loop); default: as fast as possible")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.url, args.seconds, args.concurrency,
                                     args.max_requests, args.rate))))


if __name__ == "__main__":
    main()
