"""Every built-in kind through the official client's typed API: create, read, list,
watch, the three patch types, and delete."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client, watch

pytestmark = pytest.mark.slow

POD_SPEC = {"schedulerName": "manual",
            "containers": [{"name": "c", "image": "curlimages/curl"}]}
TEMPLATE = {"metadata": {"labels": {"app": "k"}}, "spec": POD_SPEC}


def _bodies(name: str) -> dict[str, dict]:
    return {
        "namespace": {"apiVersion": "v1", "kind": "Namespace"},
        "node": {"apiVersion": "v1", "kind": "Node"},
        "pod": {"apiVersion": "v1", "kind": "Pod", "spec": POD_SPEC},
        "service": {"apiVersion": "v1", "kind": "Service",
                    "spec": {"selector": {"app": "k"}, "ports": [{"port": 80}]}},
        "service_account": {"apiVersion": "v1", "kind": "ServiceAccount"},
        "endpoints": {"apiVersion": "v1", "kind": "Endpoints", "subsets": []},
        "config_map": {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}},
        "secret": {"apiVersion": "v1", "kind": "Secret", "stringData": {"k": "v"}},
        "event": {"apiVersion": "v1", "kind": "Event", "reason": "Test",
                  "involvedObject": {"kind": "Pod", "name": name}},
        "deployment": {"apiVersion": "apps/v1", "kind": "Deployment",
                       "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "k"}},
                                "template": TEMPLATE}},
        "replica_set": {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "k"}},
                                 "template": TEMPLATE}},
        "daemon_set": {"apiVersion": "apps/v1", "kind": "DaemonSet",
                       "spec": {"selector": {"matchLabels": {"app": "k"}},
                                "template": {**TEMPLATE, "spec": {
                                    **POD_SPEC, "nodeSelector": {"no-such": "node"}}}}},
        "endpoint_slice": {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "addressType": "IPv4", "endpoints": []},
        "custom_resource_definition": {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "spec": {"group": "kinds.example.com", "scope": "Namespaced",
                     "names": {"plural": name.replace("-", ""), "kind": "Thing"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {
                                       "type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True}}}]}},
    }


# (client class, method stem, namespaced)
KINDS = [
    (client.CoreV1Api, "namespace", False),
    (client.CoreV1Api, "node", False),
    (client.CoreV1Api, "pod", True),
    (client.CoreV1Api, "service", True),
    (client.CoreV1Api, "service_account", True),
    (client.CoreV1Api, "endpoints", True),
    (client.CoreV1Api, "config_map", True),
    (client.CoreV1Api, "secret", True),
    (client.CoreV1Api, "event", True),
    (client.AppsV1Api, "deployment", True),
    (client.AppsV1Api, "replica_set", True),
    (client.AppsV1Api, "daemon_set", True),
    (client.DiscoveryV1Api, "endpoint_slice", True),
    (client.ApiextensionsV1Api, "custom_resource_definition", False),
]


@pytest.mark.parametrize(("api_class", "stem", "namespaced"), KINDS,
                         ids=[k[1] for k in KINDS])
def test_crud_watch_patch_delete(api_client, namespace, api_class, stem, namespaced):
    api = api_class(api_client)
    name = f"k{uuid.uuid4().hex[:8]}"
    if stem == "custom_resource_definition":
        name = f"things{uuid.uuid4().hex[:6]}.kinds.example.com"
    body = {**_bodies(name.split(".")[0])[stem], "metadata": {"name": name,
                                                              "labels": {"suite": "kinds"}}}
    scope = "namespaced_" if namespaced else ""
    ns_args = (namespace,) if namespaced else ()

    def call(verb: str, *args, **kwargs):
        return getattr(api, f"{verb}_{scope}{stem}")(*args, **kwargs)

    created = call("create", *ns_args, body)
    rv0 = int(created.metadata.resource_version)
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert call("read", name, *ns_args).metadata.uid == created.metadata.uid
    listed = call("list", *ns_args, label_selector="suite=kinds")
    assert name in [i.metadata.name for i in listed.items]

    # strategic merge (a dict body), JSON merge, JSON patch: each one a new version
    call("patch", name, *ns_args, {"metadata": {"labels": {"strategic": "yes"}}})
    api_client.set_default_header("Content-Type", "application/merge-patch+json")
    try:
        call("patch", name, *ns_args, {"metadata": {"labels": {"merge": "yes"}}})
    finally:
        api_client.default_headers.pop("Content-Type", None)
    patched = call("patch", name, *ns_args, [
        {"op": "add", "path": "/metadata/annotations", "value": {"json": "yes"}}])
    labels = dict(patched.metadata.labels)
    labels.pop("kubernetes.io/metadata.name", None)  # a namespace's own label
    assert labels == {"suite": "kinds", "strategic": "yes", "merge": "yes"}
    assert patched.metadata.annotations == {"json": "yes"}
    assert int(patched.metadata.resource_version) > rv0

    # a watch from the creation's version replays the three modifications in order
    w = watch.Watch()
    seen = []
    for ev in w.stream(getattr(api, f"list_{scope}{stem}"), *ns_args,
                       field_selector=f"metadata.name={name}", resource_version=str(rv0),
                       timeout_seconds=5):
        seen.append((ev["type"], int(ev["object"].metadata.resource_version)))
        if len(seen) == 3:
            w.stop()
    assert [t for t, _ in seen] == ["MODIFIED"] * 3
    assert [v for _, v in seen] == sorted(v for _, v in seen)

    call("delete", name, *ns_args)
    if stem == "namespace":  # a namespace empties first, then goes
        w = watch.Watch()
        for ev in w.stream(api.list_namespace, field_selector=f"metadata.name={name}",
                           resource_version=patched.metadata.resource_version,
                           timeout_seconds=10):
            if ev["type"] == "DELETED":
                w.stop()
    remaining = call("list", *ns_args, field_selector=f"metadata.name={name}").items
    assert remaining == []
