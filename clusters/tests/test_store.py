"""The store's resourceVersion sequence and bounded watch log."""

from __future__ import annotations

import pytest

from clusters.local.apiserver.store import Store, TooOld

KEY = ("", "configmaps")


def _cm(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}}


def test_versions_increase_by_one_per_write():
    s = Store()
    versions = [int(s.put(KEY, _cm(f"c{i}"))["metadata"]["resourceVersion"]) for i in range(5)]
    assert versions == [1, 2, 3, 4, 5]
    gone = s.remove(KEY, "default", "c0")
    assert gone is not None and gone["metadata"]["resourceVersion"] == "6"


def test_resume_within_the_log_replays_in_order():
    s = Store(log_size=100)
    for i in range(10):
        s.put(KEY, _cm(f"c{i}"))
    events = s.events_since(7)
    assert [(e.rv, e.obj["metadata"]["name"]) for e in events] == [(8, "c7"), (9, "c8"),
                                                                    (10, "c9")]


def test_resume_from_beyond_the_log_is_too_old():
    s = Store(log_size=5)
    for i in range(20):
        s.put(KEY, _cm(f"c{i}"))
    assert [e.rv for e in s.events_since(15)] == [16, 17, 18, 19, 20]
    with pytest.raises(TooOld):
        s.events_since(14)
    assert s.events_since(20) == []


def test_owner_index_follows_writes():
    s = Store()
    dep = _cm("child")
    dep["metadata"]["ownerReferences"] = [{"uid": "owner-1", "controller": True}]
    s.put(KEY, dep)
    assert s.dependents("owner-1") == [(KEY, ("default", "child"))]
    s.remove(KEY, "default", "child")
    assert s.dependents("owner-1") == []
    assert s.by_uid("uid-child") is None
