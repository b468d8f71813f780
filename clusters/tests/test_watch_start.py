"""A watch sees every write after its starting version, also one made while the
server was still sending the response's headers (between taking the request and
the stream's first step): the informers of the cluster's own components (DNS, the
reference control plane) list, then watch, and a write lost in that gap stays lost
until their next relist."""

from __future__ import annotations

import asyncio

from clusters.local.apiserver.listoptions import ListOptions
from clusters.local.apiserver.server import ApiServer, ServerConfig


def _configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {}}


async def _first_event(stream) -> tuple[str, dict]:
    return await asyncio.wait_for(anext(stream), 5)


def _watch_then_write(resume: bool) -> tuple[str, dict]:
    """Ask for a watch (from the current version, or with no version and no initial
    state), write, and only then take the stream's first step."""
    api = ApiServer(ServerConfig(nodes=[])).api
    rt = api.rt("", "configmaps")
    api.store.put(rt.store_key, _configmap("before"))  # a version other than "0"
    opts = (ListOptions(resource_version=str(api.store.resource_version), watch=True)
            if resume else ListOptions(send_initial_events=False, watch=True))

    async def scenario() -> tuple[str, dict]:
        stream = api.watch(rt, "default", opts)
        api.store.put(rt.store_key, _configmap("written-in-the-gap"))
        try:
            return await _first_event(stream)
        finally:
            await stream.aclose()

    return asyncio.run(scenario())


def test_a_resumed_watch_sees_a_write_made_before_its_first_step():
    kind, obj = _watch_then_write(resume=True)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "written-in-the-gap")


def test_a_watch_from_now_sees_a_write_made_before_its_first_step():
    kind, obj = _watch_then_write(resume=False)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "written-in-the-gap")
