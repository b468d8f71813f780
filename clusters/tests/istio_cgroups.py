"""istio-cni's reading of /proc/<pid>/cgroup, ported to Python for the tests.

Port of istio/istio cni/pkg/nodeagent/podcgroupns_linux.go (``cgroupREs``,
``getPodUIDAndContainerIDFromCGroupPath``, ``canonicalizePodUID``, ``GetCgroups``,
``getPodUIDAndContainerIDFromCGroups``; the regexes come from SPIRE).  RE2's POSIX
classes become explicit ASCII sets: ``[[:punct:]]`` is ``[!-/:-@[-`{-~]``,
``[[:xdigit:]]`` is ``[0-9A-Fa-f]``.  Go's FindStringSubmatch and Python's
``re.search`` both take the leftmost match with the same (leftmost-first)
preference, so the groups come out the same.  One rewrite (in the cri-o regex)
keeps the matched language but avoids exponential backtracking, which RE2 has not.
"""

from __future__ import annotations

import re
import unicodedata

PUNCT = r"[!-/:-@\[-`{-~]"
NOT_PUNCT = r"[^!-/:-@\[-`{-~]"
X = "[0-9A-Fa-f]"
UID = f"{X}{{8}}{PUNCT}?{X}{{4}}{PUNCT}?{X}{{4}}{PUNCT}?{X}{{4}}{PUNCT}?{X}{{12}}"

CGROUP_RES = [
    # "pod"-prefixed pod UID, punctuation-separated segments, then the container ID
    re.compile(f"{PUNCT}pod(?P<poduid>{UID}){PUNCT}"
               f"(?:{NOT_PUNCT}+{PUNCT})*"
               f"(?P<containerid>{NOT_PUNCT}+)$"),
    # cri-o without a pod UID in the path
    re.compile("(?P<poduid>)"
               f"(?P<mustnotmatch>pod{UID}{PUNCT})?"
               # RE2's (?:[[:^punct:]]*/*)* is the same language as this flat form;
               # nested stars backtrack exponentially in Python's engine.
               f"(?:{NOT_PUNCT}|/)*crio{PUNCT}"
               f"(?P<containerid>{NOT_PUNCT}+)$"),
]


class ParseError(Exception):
    pass


def _canonical_uid(uid: str) -> str:
    # Go: unicode.IsPunct -> '-'
    return "".join("-" if unicodedata.category(c).startswith("P") else c for c in uid)


def from_path(path: str) -> tuple[str, str] | None:
    """(pod UID, container ID) from one cgroup path, or None."""
    path = path.removesuffix(".scope")
    found = None
    for regex in CGROUP_RES:
        m = regex.search(path)
        if m is None or m.groupdict().get("mustnotmatch"):
            continue
        if found is not None:
            return None  # more than one regex matched: ambiguous
        found = m
    if found is None:
        return None
    uid = _canonical_uid(found["poduid"]) if found["poduid"] else ""
    return uid, found["containerid"]


def pod_uid_and_container_id(proc_cgroup: str) -> tuple[str, str]:
    """GetPodUIDAndContainerID: over every line of /proc/<pid>/cgroup; lines without a
    container ID are skipped, disagreeing lines are an error."""
    uid = cid = ""
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 3:
            raise ParseError(f"cgroup entry {line!r} has fewer than 2 colons")
        got = from_path(parts[2])
        if got is None:
            continue
        if not cid:
            uid, cid = got
        elif cid != got[1]:
            raise ParseError(f"multiple container IDs found in cgroups ({cid}, {got[1]})")
        elif uid != got[0]:
            raise ParseError(f"multiple pod UIDs found in cgroups ({uid}, {got[0]})")
    return uid, cid
