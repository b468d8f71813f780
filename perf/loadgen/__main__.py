"""``python -m perf.loadgen [agent|worker|echo] ...`` (``agent`` when nothing is given)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and not args[0].startswith("-") else "agent"
    if command == "worker":
        import locust  # noqa: F401  (first of all: gevent patches before ssl is imported)

        run_worker(args)
    elif command == "agent":
        from perf.loadgen import agent

        agent.main(args)
    elif command == "echo":
        from perf.loadgen import echo

        echo.main(args)
    else:
        raise SystemExit(f"unknown command {command!r}: use agent, worker or echo")


def run_worker(args: list[str]) -> None:
    import argparse
    import json

    from perf.loadgen import worker
    from perf.plan import LoadPlan

    parser = argparse.ArgumentParser(prog="python -m perf.loadgen worker")
    parser.add_argument("--plan", required=True, help="the plan, as JSON")
    parser.add_argument("--start-at", type=float, default=None,
                        help="epoch seconds; without it, say ready and read it from stdin")
    ns = parser.parse_args(args)
    plan = LoadPlan.from_json(json.loads(ns.plan))
    start_at = ns.start_at if ns.start_at is not None else worker.ready_then_start_at(plan)
    worker.run(plan, start_at)


if __name__ == "__main__":
    main()
