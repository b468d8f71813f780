"""Malformed requests get Kubernetes Status errors naming the problem, never a 500,
and the server keeps serving."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.request

import pytest
import yaml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raw(cluster):
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    token = config["users"][0]["user"]["token"]
    with tempfile.NamedTemporaryFile(suffix=".crt") as f:
        f.write(ca)
        f.flush()
        ctx = ssl.create_default_context(cafile=f.name)

    def request(method: str, path: str, body: bytes | str | dict | None = None,
                content_type: str = "application/json") -> tuple[int, dict]:
        data = json.dumps(body).encode() if isinstance(body, dict) else (
            body.encode() if isinstance(body, str) else body)
        req = urllib.request.Request(cluster.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token}", "Content-Type": content_type})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    return request


def _status(code: int, doc: dict) -> tuple[int, str, str]:
    assert doc.get("kind") == "Status", doc
    assert doc["code"] == code
    return code, doc["reason"], doc["message"]


def test_malformed_json_is_400(raw):
    code, doc = raw("POST", "/api/v1/namespaces/default/configmaps", b"{not json")
    _, reason, message = _status(code, doc)
    assert code == 400 and reason == "BadRequest" and "not valid JSON" in message


def test_missing_name_is_422(raw):
    code, doc = raw("POST", "/api/v1/namespaces/default/configmaps",
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    assert _status(code, doc)[:2] == (422, "Invalid")
    assert doc["details"]["causes"][0]["field"] == "metadata.name"


def test_wrong_type_names_the_field(raw):
    code, doc = raw("POST", "/apis/apps/v1/namespaces/default/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    assert _status(code, doc)[0] == 422
    assert [c["field"] for c in doc["details"]["causes"]] == ["spec.replicas"]


def test_deep_wrong_type_and_bad_shapes_are_not_500(raw):
    bodies = [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
         "spec": {"containers": [{"name": "c", "image": "i", "ports": [
             {"containerPort": "http"}]}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": "p", "spec": {}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": ["a"]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": []},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name"},
         "spec": {"containers": [{"name": "c", "image": "i"}]}},
    ]
    for body in bodies:
        code, doc = raw("POST", "/api/v1/namespaces/default/pods", body)
        assert code in (400, 422), (body, doc)
        _status(code, doc)
    code, doc = raw("POST", "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "ports": [
            {"containerPort": "http"}]}]}})
    assert doc["details"]["causes"][0]["field"] == "spec.containers[0].ports[0].containerPort"


def test_unknown_field_in_strict_mode_is_400(raw):
    code, doc = raw("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"},
                     "dta": {"a": "b"}})
    _, _, message = _status(code, doc)
    assert code == 400 and 'unknown field "dta"' in message


def test_unknown_resource_and_missing_crd_are_404(raw):
    code, doc = raw("GET", "/api/v1/gadgets")
    assert _status(code, doc)[0] == 404 and "gadgets" in doc["message"]
    code, doc = raw("POST", "/apis/example.com/v1/namespaces/default/widgets",
                    {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert _status(code, doc)[0] == 404 and "widgets.example.com" in doc["message"]


def test_kind_mismatch_and_namespace_mismatch_are_400(raw):
    code, doc = raw("POST", "/api/v1/namespaces/default/configmaps",
                    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "m"}})
    assert _status(code, doc)[0] == 400 and "Secret" in doc["message"]
    code, doc = raw("POST", "/api/v1/namespaces/default/configmaps",
                    {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "m", "namespace": "other"}})
    assert _status(code, doc)[0] == 400 and "namespace" in doc["message"]


def test_bad_selectors_and_patches(raw):
    code, doc = raw("GET", "/api/v1/pods?labelSelector=a%20in%20(b")
    assert _status(code, doc)[0] == 400
    code, doc = raw("GET", "/api/v1/pods?fieldSelector=spec.foo=bar")
    assert _status(code, doc)[0] == 400 and "spec.foo" in doc["message"]
    raw("POST", "/api/v1/namespaces/default/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "patchme"}})
    code, doc = raw("PATCH", "/api/v1/namespaces/default/configmaps/patchme",
                    b'[{"op": "remove", "path": "/data/missing"}]',
                    "application/json-patch+json")
    assert _status(code, doc)[0] == 422 and "/data/missing" in doc["message"]
    code, doc = raw("PATCH", "/api/v1/namespaces/default/configmaps/patchme", b"{}",
                    "text/plain")
    assert _status(code, doc)[0] == 415


def test_crd_without_schema_or_storage_version_is_422(raw):
    code, doc = raw("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": False}]}})
    assert _status(code, doc)[0] == 422
    fields = {c["field"] for c in doc["details"]["causes"]}
    assert {"spec.versions", "spec.versions[0].schema.openAPIV3Schema"} <= fields


def test_system_namespaces_cannot_be_deleted(raw):
    code, doc = raw("DELETE", "/api/v1/namespaces/kube-system")
    assert _status(code, doc)[:2] == (403, "Forbidden")
    assert "may not be deleted" in doc["message"]


def test_server_keeps_serving(raw):
    assert raw("GET", "/api/v1/namespaces/default")[0] == 200
