"""A container's environment and downward API values, by kubelet's rules."""

from __future__ import annotations

import base64

import pytest

from clusters.local.node.podenv import (
    ConfigError,
    PodFacts,
    container_env,
    field_value,
    quantity,
    references,
    resource_value,
)

FACTS = PodFacts(node="node-1", node_ip="198.18.255.1", pod_ip="198.18.0.7",
                 allocatable={"cpu": "2", "memory": "4Gi", "ephemeral-storage": "10Gi"})
POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                    "labels": {"app": "x", "tier": "web"}, "annotations": {"a/b": "c"}},
       "spec": {"serviceAccountName": "sa"}}
CM = {"data": {"MESH": "m", "bad name": "skipped"}, "binaryData": {"BIN": "aGk="}}
SECRET = {"data": {"TOKEN": base64.b64encode(b"s3cret").decode()}}
OBJECTS = {("configmaps", "cfg"): CM, ("secrets", "sec"): SECRET,
           ("configmaps", "gone"): None, ("secrets", "gone"): None}


def env_of(container, base=None):
    return container_env(container, POD, FACTS, OBJECTS, base or {})


def test_env_from_config_maps_and_secrets_with_prefix_and_optional():
    env = env_of({"envFrom": [
        {"configMapRef": {"name": "cfg"}, "prefix": "CM_"},
        {"secretRef": {"name": "sec"}},
        {"configMapRef": {"name": "gone", "optional": True}}]})
    # binaryData is for volumes only; an invalid name is skipped
    assert env == {"CM_MESH": "m", "TOKEN": "s3cret"}
    with pytest.raises(ConfigError, match='configmap "gone" not found'):
        env_of({"envFrom": [{"configMapRef": {"name": "gone"}}]})
    with pytest.raises(ConfigError, match='secret "gone" not found'):
        env_of({"envFrom": [{"secretRef": {"name": "gone"}}]})


def test_env_in_order_with_expansion_overriding_env_from_and_the_base():
    env = env_of({"envFrom": [{"configMapRef": {"name": "cfg"}}], "env": [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "$(A)-$(MESH)-$(NOPE)-$$(A)-$(HOST)"},
        {"name": "MESH", "value": "override"}]}, base={"HOST": "h", "A": "base"})
    assert env["B"] == "1-m-$(NOPE)-$(A)-h"
    assert env["MESH"] == "override" and env["A"] == "1"


def test_key_refs_with_optional():
    env = env_of({"env": [
        {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MESH"}}},
        {"name": "T", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "TOKEN"}}},
        {"name": "O1", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k",
                                                         "optional": True}}},
        {"name": "O2", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nokey",
                                                      "optional": True}}}]})
    assert env == {"M": "m", "T": "s3cret"}
    with pytest.raises(ConfigError, match="couldn't find key nokey in ConfigMap ns/cfg"):
        env_of({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {
            "name": "cfg", "key": "nokey"}}}]})
    with pytest.raises(ConfigError, match='secret "gone" not found'):
        env_of({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {
            "name": "gone", "key": "k"}}}]})


@pytest.mark.parametrize("path, value", [
    ("metadata.name", "p"), ("metadata.namespace", "ns"), ("metadata.uid", "u-1"),
    ("metadata.labels['tier']", "web"), ("metadata.annotations['a/b']", "c"),
    ("spec.nodeName", "node-1"), ("spec.serviceAccountName", "sa"),
    ("status.podIP", "198.18.0.7"), ("status.hostIP", "198.18.255.1"),
])
def test_field_refs(path, value):
    env = env_of({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    assert env["V"] == value


def test_whole_label_maps_only_in_volumes():
    assert field_value("metadata.labels", POD, FACTS, whole_maps=True) == \
        'app="x"\ntier="web"'
    with pytest.raises(ConfigError, match="unsupported fieldPath"):
        field_value("metadata.labels", POD, FACTS)


@pytest.mark.parametrize("resources, ref, value", [
    ({"limits": {"cpu": "250m"}}, {"resource": "limits.cpu", "divisor": "1m"}, "250"),
    ({"limits": {"cpu": "250m"}}, {"resource": "limits.cpu"}, "1"),          # rounded up
    ({"requests": {"cpu": "1.5"}}, {"resource": "requests.cpu"}, "2"),
    ({}, {"resource": "limits.cpu"}, "2"),                                    # node's
    ({}, {"resource": "requests.cpu"}, "0"),
    ({"limits": {"memory": "1Gi"}}, {"resource": "requests.memory", "divisor": "1Mi"},
     "1024"),                                                                 # request = limit
    ({}, {"resource": "limits.memory", "divisor": "1Gi"}, "4"),
    ({"limits": {"memory": "1500k"}}, {"resource": "limits.memory", "divisor": "1M"}, "2"),
])
def test_resource_field_refs(resources, ref, value):
    assert resource_value(ref, {"resources": resources}, FACTS) == value


def test_bad_quantities_and_resources_are_config_errors():
    with pytest.raises(ConfigError, match="invalid resource quantity"):
        quantity("lots")
    with pytest.raises(ConfigError, match="unsupported resource"):
        resource_value({"resource": "limits.gpu"}, {}, FACTS)
    assert quantity("1e3") == 1000 and quantity("2Ki") == 2048


def test_references_lists_what_env_reads():
    assert references([{"envFrom": [{"configMapRef": {"name": "a"}}], "env": [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "b", "key": "k"}}}]}]) == \
        {("configmaps", "a"), ("secrets", "b")}
