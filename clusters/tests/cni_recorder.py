"""A CNI plugin of the tests' own that records how it was called.

Installed as an executable (this file behind a ``#!`` line naming this Python) into
a node's opt/cni/bin; its configuration object names a ``recordDir``.  Each call
writes one JSON record there: the command, the ``CNI_*`` environment, the stdin
configuration, the network namespace it runs in and, given a ``CNI_NETNS``, what
that namespace holds (processes, eth0's addresses, the namespace file's inode).
ADD passes ``prevResult`` through as its result, as a chained plugin must; with
``failAdds: N`` the first N ADDs fail with an error result (code 111) instead.

Like real plugins it works with host paths of the node it runs on: ``recordDir``,
``readConfig`` (a conflist it reads, recording the plugin types listed there) and
``nodeRecordDir`` (where an ADD leaves a file named after the pod's UID, made if
missing) are paths as the node agent's view of the node shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ERROR_CODE = 111


def install(bin_dir: Path, plugin_type: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / plugin_type
    path.write_text(f"#!{sys.executable}\n" + Path(__file__).read_text())
    path.chmod(0o755)
    return path


def records(record_dir: Path) -> list[dict[str, Any]]:
    """The calls so far, in the order they were made."""
    out = []
    for f in sorted(record_dir.glob("*.json")):
        out.append(json.loads(f.read_text()))
    return sorted(out, key=lambda r: r["time_ns"])


def _processes_in(netns_path: str) -> list[int]:
    ino = os.stat(netns_path).st_ino
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == ino:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _eth0_addresses(netns_path: str) -> list[str] | None:
    proc = subprocess.run(["nsenter", f"--net={netns_path}", "ip", "-j", "-4", "addr", "show",
                           "dev", "eth0"], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(proc.stdout)
            for a in link.get("addr_info", ())]


def main() -> int:
    conf = json.load(sys.stdin)
    command = os.environ.get("CNI_COMMAND", "")
    record_dir = Path(conf["recordDir"])
    netns_path = os.environ.get("CNI_NETNS", "")
    record: dict[str, Any] = {
        "command": command, "type": conf.get("type"), "time_ns": time.time_ns(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("CNI_")},
        "stdin": conf, "netns_inode": os.stat("/proc/self/ns/net").st_ino,
        "netns_exists": bool(netns_path) and os.path.exists(netns_path),
    }
    if record["netns_exists"]:
        record["netns_file_inode"] = os.stat(netns_path).st_ino
    if command == "ADD" and record["netns_exists"]:
        record["pids_in_netns"] = _processes_in(netns_path)
        record["eth0"] = _eth0_addresses(netns_path)
    if conf.get("readConfig"):
        try:
            listed = json.loads(Path(conf["readConfig"]).read_text())["plugins"]
            record["config_read"] = [p.get("type") for p in listed]
        except (OSError, ValueError, KeyError) as exc:
            record["config_read"] = f"unreadable: {exc}"
    if command == "ADD" and conf.get("nodeRecordDir"):
        args = dict(a.partition("=")[::2] for a in os.environ.get("CNI_ARGS", "").split(";"))
        node_dir = Path(conf["nodeRecordDir"])
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / args.get("K8S_POD_UID", "unknown")).write_text(command + "\n")
    earlier_adds = sum(1 for r in records(record_dir)
                       if r["command"] == "ADD" and r["type"] == conf.get("type"))
    failing = command == "ADD" and earlier_adds < int(conf.get("failAdds", 0))
    if failing:
        output = {"cniVersion": conf.get("cniVersion"), "code": ERROR_CODE,
                  "msg": "test plugin refuses", "details": f"attempt {earlier_adds + 1}"}
    elif command == "ADD":
        output = conf.get("prevResult") or {"cniVersion": conf.get("cniVersion")}
    else:
        output = None
    record["output"] = output
    record["failed"] = failing
    name = record_dir / f"{record['time_ns']}-{os.getpid()}.json"
    tmp = name.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(name)
    print("recorded", command, file=sys.stderr)
    if output is not None:
        print(json.dumps(output))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
