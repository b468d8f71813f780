"""Kubernetes protobuf request bodies read into JSON (clusters/local/apiserver/protobuf.py).

The bodies are built with the same message definitions, the way client-go's protobuf
serializer frames them (k8s.io/apimachinery pkg/runtime/serializer/protobuf): the
``k8s\\0`` magic, a runtime.Unknown with the object's apiVersion and kind, and the
object's own message as ``raw``.  What kubectl actually sends is checked end to end in
test_kubectl_generators.py.
"""

from __future__ import annotations

import pytest

from clusters.local.apiserver import protobuf
from clusters.tests.rawkube import RawKube


def message(name: str):
    return protobuf._message_class(name)()


def framed(api_version: str, kind: str, obj) -> bytes:
    envelope = message("k8s.io.apimachinery.pkg.runtime.Unknown")
    envelope.typeMeta.apiVersion = api_version
    envelope.typeMeta.kind = kind
    envelope.raw = obj.SerializeToString()
    return protobuf.MAGIC + envelope.SerializeToString()


def test_a_configmap_reads_as_its_json():
    cm = message("k8s.io.api.core.v1.ConfigMap")
    cm.metadata.name = "settings"
    cm.metadata.namespace = ""          # Go writes every plain string, empty or not
    cm.metadata.generation = 0          # a plain omitempty number, written as 0
    cm.metadata.creationTimestamp.SetInParent()  # a zero Time: an empty message
    cm.data["mode"] = "fast"
    cm.binaryData["blob"] = b"\x00\xff"
    assert protobuf.decode(framed("v1", "ConfigMap", cm)) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"mode": "fast"},
        "binaryData": {"blob": "AP8="},  # []byte is base64 in Go's JSON
    }


def test_a_pointers_zero_is_kept_and_a_plain_omitempty_zero_dropped():
    d = message("k8s.io.api.apps.v1.Deployment")
    d.metadata.name = "web"
    d.spec.replicas = 0        # *int32: zero replicas is a choice
    d.spec.paused = False      # bool, omitempty: Go's JSON leaves it out
    d.spec.minReadySeconds = 0
    c = d.spec.template.spec.containers.add()
    c.name, c.image = "web", "nginx"
    port = c.ports.add()
    port.containerPort, port.hostPort = 80, 0
    d.spec.strategy.rollingUpdate.maxSurge.type = 1
    d.spec.strategy.rollingUpdate.maxSurge.strVal = "25%"
    d.spec.strategy.rollingUpdate.maxUnavailable.type = 0
    d.spec.strategy.rollingUpdate.maxUnavailable.intVal = 1
    spec = protobuf.decode(framed("apps/v1", "Deployment", d))["spec"]
    assert spec["replicas"] == 0
    assert "paused" not in spec and "minReadySeconds" not in spec
    assert spec["template"]["spec"]["containers"] == [
        {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]
    assert spec["strategy"] == {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}}


def test_inlined_structs_are_lifted_and_times_are_rfc3339():
    pod = message("k8s.io.api.core.v1.Pod")
    pod.metadata.name = "p"
    pod.metadata.deletionTimestamp.seconds = 1_800_000_000
    vol = pod.spec.volumes.add()
    vol.name = "data"
    vol.volumeSource.emptyDir.medium = "Memory"  # Volume inlines its VolumeSource
    c = pod.spec.containers.add()
    c.name = "c"
    c.readinessProbe.handler.httpGet.path = "/ready"  # Probe inlines ProbeHandler
    c.readinessProbe.handler.httpGet.port.intVal = 8080
    out = protobuf.decode(framed("v1", "Pod", pod))
    assert out["metadata"]["deletionTimestamp"] == "2027-01-15T08:00:00Z"
    assert out["spec"]["volumes"] == [{"name": "data", "emptyDir": {"medium": "Memory"}}]
    assert out["spec"]["containers"][0]["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": 8080}}


def test_an_ingress_rule_value_is_inlined():
    ing = message("k8s.io.api.networking.v1.Ingress")
    rule = ing.spec.rules.add()
    rule.host = "foo.com"
    path = rule.ingressRuleValue.http.paths.add()
    path.path, path.pathType = "/bar", "Exact"
    path.backend.service.name = "svc"
    path.backend.service.port.number = 80
    out = protobuf.decode(framed("networking.k8s.io/v1", "Ingress", ing))
    assert out["spec"]["rules"] == [{"host": "foo.com", "http": {"paths": [
        {"path": "/bar", "pathType": "Exact",
         "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}}]


def test_delete_options_are_apimachinerys_whatever_the_group():
    opts = message("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions")
    opts.gracePeriodSeconds = 0
    opts.propagationPolicy = "Foreground"
    assert protobuf.decode(framed("policy/v1", "DeleteOptions", opts)) == {
        "apiVersion": "policy/v1", "kind": "DeleteOptions",
        "gracePeriodSeconds": 0, "propagationPolicy": "Foreground"}


@pytest.mark.parametrize(("nanoseconds", "text"), [
    (0, "0s"), (1_500_000, "1.5ms"), (90 * 10**9, "1m30s"), (3_600_000_000_000, "1h0m0s"),
    (-2 * 10**9, "-2s"), (250, "250ns"),
])
def test_durations_read_as_go_writes_them(nanoseconds, text):
    assert protobuf.go_duration(nanoseconds) == text


@pytest.mark.parametrize(("body", "problem"), [
    (b'{"kind": "Namespace"}', "magic"),
    (protobuf.MAGIC + b"\xff\xff\xff", "envelope"),
])
def test_malformed_bodies_are_errors_that_say_what_is_wrong(body, problem):
    with pytest.raises(protobuf.ProtobufError, match=problem):
        protobuf.decode(body)


def test_a_truncated_object_is_an_error_naming_its_kind():
    cm = message("k8s.io.api.core.v1.ConfigMap")
    cm.metadata.name = "x" * 40
    whole = framed("v1", "ConfigMap", cm)
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(whole[:-10])


def test_a_custom_kind_is_unsupported_not_malformed():
    with pytest.raises(protobuf.UnsupportedKind, match="as JSON"):
        protobuf.decode(framed("security.istio.io/v1", "AuthorizationPolicy",
                               message("k8s.io.api.core.v1.ConfigMap")))
    with pytest.raises(protobuf.UnsupportedKind, match="not a message"):
        protobuf.decode(framed("v1", "NoSuchKind", message("k8s.io.api.core.v1.ConfigMap")))


@pytest.mark.slow
def test_the_server_creates_from_protobuf_and_answers_415_or_400_otherwise(cluster):
    kube = RawKube(cluster.kubeconfig)
    ns = message("k8s.io.api.core.v1.Namespace")
    ns.metadata.name = "from-protobuf"
    ns.metadata.labels["made-by"] = "test"
    reply = kube.request("POST", "/api/v1/namespaces", framed("v1", "Namespace", ns),
                         content_type=protobuf.MEDIA_TYPE)
    assert reply.status == 201, reply.body
    assert reply.json()["metadata"]["labels"]["made-by"] == "test"
    crd = kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": True}}}]}})
    assert crd.status == 201, crd.body
    custom = kube.request("POST", "/apis/example.com/v1/namespaces/default/widgets",
                          framed("example.com/v1", "Widget", ns),
                          content_type=protobuf.MEDIA_TYPE)
    assert custom.status == 415 and custom.json()["reason"] == "UnsupportedMediaType"
    broken = kube.request("POST", "/api/v1/namespaces", protobuf.MAGIC + b"\x0a\xff",
                          content_type=protobuf.MEDIA_TYPE)
    assert broken.status == 400 and "protobuf" in broken.json()["message"]
    kube.request("DELETE", "/api/v1/namespaces/from-protobuf")
    kube.request("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                 "widgets.example.com")


def test_empty_strings_in_lists_and_maps_are_kept():
    role = message("k8s.io.api.rbac.v1.Role")
    rule = role.rules.add()
    rule.apiGroups.append("")  # the core group
    rule.verbs.append("get")
    cm = message("k8s.io.api.core.v1.ConfigMap")
    cm.data["empty"] = ""
    assert protobuf.decode(framed("rbac.authorization.k8s.io/v1", "Role", role))["rules"] \
        == [{"apiGroups": [""], "verbs": ["get"]}]
    assert protobuf.decode(framed("v1", "ConfigMap", cm))["data"] == {"empty": ""}
