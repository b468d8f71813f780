"""``python -m clusters.local up|down|status|cleanup``: the local cluster by hand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..provider import ClusterError
from .images.executables import ENV_VAR
from .provider import DEFAULT_NAME, LocalCluster
from .state import ClusterDir, leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clusters.local",
        description="Run the embedded local Kubernetes cluster (no Docker needed).")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a cluster and print its kubeconfig path")
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument("--port", type=int, default=0,
                    help="API server port on 127.0.0.1 (default: any free port)")
    up.add_argument("--image-exec", action="append", default=[], metavar="IMAGE=EXE|FILE",
                    help="run an image as an executable of this machine: 'IMAGE=/path/to/exe' "
                         "(any tag unless IMAGE has one; wildcards allowed) or a YAML/JSON file "
                         "of images with several files (repeatable; also "
                         f"{ENV_VAR}, comma-separated)")
    for p in (up, sub.add_parser("down", help="stop a cluster and remove its files"),
              sub.add_parser("status", help="is a cluster running, and where")):
        p.add_argument("--name", default=DEFAULT_NAME,
                       help=f"cluster name (default {DEFAULT_NAME})")
    cleanup = sub.add_parser(
        "cleanup", help="remove what dead or killed runs left behind; running clusters are "
                        "left alone unless named")
    cleanup.add_argument("--name", action="append", default=[], metavar="NAME",
                         help="also stop and remove this cluster, running or not (repeatable)")
    demo = sub.add_parser("demo", help="up, apply a manifest (Bookinfo), show the result, down")
    demo.add_argument("--manifest", type=Path, default=None)
    demo.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args(argv)

    try:
        if args.command == "demo":
            from .demo import DEFAULT_MANIFEST, run_demo

            return run_demo(args.manifest or DEFAULT_MANIFEST, args.nodes)
        if args.command == "up":
            cluster = LocalCluster(args.name, nodes=args.nodes, port=args.port,
                                   die_with_parent=False, image_executables=args.image_exec)
            cluster.up()
            print(f"local cluster {args.name!r} is up at {cluster.url}")
            print(f"kubeconfig: {cluster.kubeconfig}")
            print(f"try: kubectl --kubeconfig {cluster.kubeconfig} get nodes")
            return 0
        if args.command == "down":
            d = ClusterDir.for_name(args.name)
            was_running = d.stop()
            existed = d.path.exists()
            d.remove()
            print(f"local cluster {args.name!r} " + (
                "stopped and removed" if was_running else
                "was not running; its files were removed" if existed else "does not exist"))
            return 0
        if args.command == "status":
            d = ClusterDir.for_name(args.name)
            if d.alive():
                print(f"local cluster {args.name!r} is running; kubeconfig: {d.kubeconfig}")
                return 0
            print(f"local cluster {args.name!r} is not running")
            return 1
        if args.command == "cleanup":
            return _cleanup(set(args.name))
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 2


def _cleanup(named: set[str]) -> int:
    """Remove the folders whose cluster is dead; a running one only when named (it may
    be someone else's, in the shared state folder), and one still being made never."""
    removed = 0
    folders = {d.name: d for d in leftovers()}
    for name in sorted(named - set(folders)):
        print(f"no local cluster named {name!r}")
    for d in folders.values():
        if d.alive():
            if d.name not in named:
                print(f"left alone: {d.name} is running (pid {d.pid()}); "
                      f"name it to stop it: cleanup --name {d.name}")
                continue
            print(f"stopping {d.name} (pid {d.pid()})")
            d.stop()
        elif d.being_made() and d.name not in named:
            print(f"left alone: {d.name} is being brought up (no daemon yet)")
            continue
        d.remove()
        removed += 1
    print(f"removed {removed} cluster folder(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
