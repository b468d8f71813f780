"""Server-side apply through the API, with the official client (kubectl's are in
test_kubectl.py).

The clients send what istioctl and istiod send (istio/istio operator/pkg/install/
install.go ``serverSideApply``: whole objects as YAML, fieldManager
``istio-operator``, force; pilot/pkg/serviceregistry/ambient/statusqueue: conditions
applied to ``/status`` with force, one field manager per reporter); expectations
follow the Kubernetes docs (reference/using-api/server-side-apply) and the real
server's messages.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

APPLY = "application/apply-patch+yaml"


@pytest.fixture(scope="module")
def dyn(api_client) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(api_client)


def send(api_client: client.ApiClient, method: str, path: str, body: Any,
         content_type: str = APPLY, headers: dict[str, str] | None = None,
         **query: str) -> tuple[int, dict[str, Any]]:
    """One request as the client library sends it; a str body goes as it is (YAML)."""
    m, url, hdrs, data, _ = api_client.param_serialize(
        method, path, query_params=list(query.items()),
        header_params={"Content-Type": content_type, "Accept": "application/json",
                       **(headers or {})},
        body=body, auth_settings=["BearerToken"])
    response = api_client.call_api(m, url, hdrs, data)
    response.read()
    return response.status, json.loads(response.data)


def configmap(ns: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": ns}, "data": data}


def owners(obj: Any) -> dict[tuple[str, str], dict[str, Any]]:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
    entries = meta.get("managedFields") or meta.get("managed_fields") or []
    return {(e["manager"], e["operation"]): e.get("fieldsV1") or e.get("fields_v1")
            for e in entries}


def test_apply_creates_then_reapplying_changes_nothing(api_client, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps/settings"
    code, created = send(api_client, "PATCH", path, configmap(namespace, a="1"),
                         fieldManager="istio-operator", force="true")
    assert code == 201
    assert owners(created) == {("istio-operator", "Apply"): {"f:data": {"f:a": {}}}}
    code, again = send(api_client, "PATCH", path, configmap(namespace, a="1"),
                       fieldManager="istio-operator", force="true")
    assert code == 200
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert again["metadata"]["managedFields"] == created["metadata"]["managedFields"]


def test_apply_body_as_yaml_like_istioctl(api_client, namespace):
    """istioctl sends the rendered manifest as YAML; a date-like value stays a string,
    as sigs.k8s.io/yaml reads it."""
    manifest = (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"
                f"  namespace: {namespace}\n  annotations:\n    released: 2024-01-01\n"
                "data:\n  mesh: |-\n    defaultConfig: {}\n")
    code, obj = send(api_client, "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/settings",
                     manifest, fieldManager="istio-operator", force="true")
    assert code == 201
    assert obj["metadata"]["annotations"] == {"released": "2024-01-01"}
    assert obj["data"] == {"mesh": "defaultConfig: {}"}


def test_apply_needs_a_field_manager_and_yaml_and_force_only_for_apply(api_client, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps/settings"
    code, status = send(api_client, "PATCH", path, configmap(namespace, a="1"))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required '
        "for apply patch")
    code, _ = send(api_client, "PATCH", path, "\u00a0", fieldManager="m",
                   content_type="application/apply-patch+cbor")
    assert code == 415
    assert send(api_client, "PATCH", path, configmap(namespace, a="1"), fieldManager="m")[0] == 201
    code, status = send(api_client, "PATCH", path, {"data": {"b": "2"}},
                        content_type="application/merge-patch+json", force="true")
    assert code == 422
    assert "force: Forbidden: may not be specified for non-apply patch" in status["message"]
    code, status = send(api_client, "PATCH", path, {**configmap(namespace), "kind": "Secret"},
                        fieldManager="m")
    assert code == 400 and "invalid object type" in status["message"]


def test_unknown_fields_of_an_apply_follow_field_validation(api_client, namespace):
    path = f"/api/v1/namespaces/{namespace}/configmaps/settings"
    config = {**configmap(namespace, a="1"), "bogus": True}
    code, status = send(api_client, "PATCH", path, config, fieldManager="m",
                        fieldValidation="Strict")
    assert code == 400 and 'unknown field "bogus"' in status["message"]
    code, obj = send(api_client, "PATCH", path, config, fieldManager="m")
    assert code == 201 and "bogus" not in obj and obj["data"] == {"a": "1"}


def test_conflicts_name_each_field_and_manager_and_force_takes_over(dyn, namespace):
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    dyn.server_side_apply(cms, body=configmap(namespace, a="1", b="2"), field_manager="one")
    with pytest.raises(ApiException) as caught:
        dyn.server_side_apply(cms, body=configmap(namespace, a="9", b="8"), field_manager="two")
    status = json.loads(caught.value.body)
    assert (status["code"], status["reason"]) == (409, "Conflict")
    assert status["message"] == ('Apply failed with 2 conflicts: conflicts with "one":\n'
                                 "- .data.a\n- .data.b")
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "one"', "field": ".data.a"},
        {"reason": "FieldManagerConflict", "message": 'conflict with "one"', "field": ".data.b"},
    ]
    forced = dyn.server_side_apply(cms, body=configmap(namespace, a="9"), field_manager="two",
                                   force_conflicts=True).to_dict()
    assert forced["data"] == {"a": "9", "b": "2"}
    assert owners(forced) == {("one", "Apply"): {"f:data": {"f:b": {}}},
                              ("two", "Apply"): {"f:data": {"f:a": {}}}}


def test_fields_an_applier_drops_go_unless_someone_else_owns_them(dyn, namespace):
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    dyn.server_side_apply(cms, body=configmap(namespace, a="1", b="2", c="3"),
                          field_manager="one")
    dyn.server_side_apply(cms, body=configmap(namespace, c="3"), field_manager="two")
    after = dyn.server_side_apply(cms, body=configmap(namespace, a="1"), field_manager="one")
    assert after.data.to_dict() == {"a": "1", "c": "3"}


def test_ordinary_writes_record_update_managers(cluster, core, namespace):
    """A create names its manager with fieldManager; without one, the User-Agent's
    first word is the manager (k8s.io/apiserver handlers/create.go)."""
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"}),
        field_manager="installer")
    istiod = cluster.api_client()
    istiod.user_agent = "pilot-discovery/1.28.0 (linux/amd64) istio"
    try:
        client.CoreV1Api(istiod).patch_namespaced_config_map(
            "settings", namespace, {"data": {"b": "2"}},
            _content_type="application/merge-patch+json")
    finally:
        istiod.close()
    got = core.read_namespaced_config_map("settings", namespace)
    managed = {(m.manager, m.operation): m.fields_v1 for m in got.metadata.managed_fields}
    assert managed == {("installer", "Update"): {"f:data": {".": {}, "f:a": {}}},
                       ("pilot-discovery", "Update"): {"f:data": {"f:b": {}}}}
    # An applier that changes the updater's field conflicts with it, naming its version.
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("settings", namespace, configmap(namespace, b="3"),
                                         field_manager="applier", _content_type=APPLY)
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["message"] == (
        'Apply failed with 1 conflict: conflict with "pilot-discovery" using v1: .data.b')


def test_status_apply_changes_status_only_and_main_apply_ignores_status(api_client,
                                                                          namespace):
    base = f"/api/v1/namespaces/{namespace}/services/waypoint"
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "waypoint", "namespace": namespace},
           "spec": {"ports": [{"port": 15008, "name": "mesh"}], "selector": {"app": "w"}}}
    send(api_client, "PATCH", base, svc, fieldManager="istio.io/gateway-controller",
         force="true")

    def conditions(*types: str, spec_port: int | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "waypoint"},
            "status": {"conditions": [
                {"type": t, "status": "True", "reason": "Bound", "message": "ok",
                 "lastTransitionTime": "2024-01-01T00:00:00Z"} for t in types]}}
        if spec_port is not None:
            doc["spec"] = {"ports": [{"port": spec_port}]}
        return doc

    code, obj = send(api_client, "PATCH", base + "/status",
                     conditions("istio.io/WaypointBound", spec_port=1), fieldManager="waypoint",
                     force="true")
    assert code == 200
    assert [c["type"] for c in obj["status"]["conditions"]] == ["istio.io/WaypointBound"]
    assert [p["port"] for p in obj["spec"]["ports"]] == [15008]
    send(api_client, "PATCH", base + "/status", conditions("istio.io/Other"),
         fieldManager="other", force="true")
    code, obj = send(api_client, "PATCH", base + "/status", conditions(), fieldManager="waypoint",
                     force="true")
    assert [c["type"] for c in obj["status"]["conditions"]] == ["istio.io/Other"]
    status_managers = {e["manager"]: e.get("subresource") for e in obj["metadata"]["managedFields"]
                       if e["operation"] == "Apply"}
    assert status_managers == {"istio.io/gateway-controller": None, "other": "status"}
    code, obj = send(api_client, "PATCH", base, {**svc, "status": {"conditions": []}},
                     fieldManager="istio.io/gateway-controller", force="true")
    assert [c["type"] for c in obj["status"]["conditions"]] == ["istio.io/Other"]


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.ssa.example.com"},
    "spec": {"group": "ssa.example.com", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                       "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "hosts": {"type": "array", "items": {"type": "string"},
                                             "x-kubernetes-list-type": "set"},
                                   "action": {"type": "string"}}},
                               "status": {"type": "object", "properties": {
                                   "conditions": {
                                       "type": "array", "x-kubernetes-list-type": "map",
                                       "x-kubernetes-list-map-keys": ["type"],
                                       "items": {"type": "object", "properties": {
                                           "type": {"type": "string"},
                                           "status": {"type": "string"}}}}}}}}}}]}}


def test_custom_resources_merge_by_their_schema_and_apply_status(api_client, dyn, namespace):
    """Custom resources merge as their CRD's list markers say; status is applied
    through /status, as istiod reports policy status."""
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                             kind="CustomResourceDefinition")
    dyn.server_side_apply(crds, body=WIDGET_CRD, field_manager="istio-operator",
                          force_conflicts=True)
    base = f"/apis/ssa.example.com/v1/namespaces/{namespace}/widgets/w"

    def widget(*hosts: str) -> dict[str, Any]:
        return {"apiVersion": "ssa.example.com/v1", "kind": "Widget",
                "metadata": {"name": "w", "namespace": namespace},
                "spec": {"hosts": list(hosts)}}

    assert send(api_client, "PATCH", base, widget("a"), fieldManager="one")[0] == 201
    code, obj = send(api_client, "PATCH", base, widget("b"), fieldManager="two")
    assert code == 200 and obj["spec"]["hosts"] == ["a", "b"]  # a set: both owners' items

    def report(kind: str) -> dict[str, Any]:
        return {"apiVersion": "ssa.example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                "spec": {"action": "ignored"},
                "status": {"conditions": [{"type": kind, "status": "True"}]}}

    send(api_client, "PATCH", base + "/status", report("Accepted"), fieldManager="ztunnel",
         force="true")
    code, obj = send(api_client, "PATCH", base + "/status", report("Bound"),
                     fieldManager="waypoint", force="true")
    assert [c["type"] for c in obj["status"]["conditions"]] == ["Accepted", "Bound"]
    assert obj["spec"] == {"hosts": ["a", "b"]}


def test_reapplying_an_unchanged_crd_keeps_its_version(api_client, dyn):
    """istioctl install applies every CRD again on each run; an unchanged one must
    stay the same object (no new resourceVersion, no watch event)."""
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1",
                             kind="CustomResourceDefinition")
    dyn.server_side_apply(crds, body=WIDGET_CRD, field_manager="istio-operator",
                          force_conflicts=True)
    # Conditions that last changed long ago (a CRD older than this second).
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.ssa.example.com"
    _, crd = send(api_client, "GET", path, None, content_type="application/json")
    for cond in crd["status"]["conditions"]:
        cond["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    code, old = send(api_client, "PUT", path + "/status", crd, content_type="application/json")
    assert code == 200
    again = dyn.server_side_apply(crds, body=WIDGET_CRD, field_manager="istio-operator",
                                  force_conflicts=True)
    assert again.metadata.resourceVersion == old["metadata"]["resourceVersion"]
    assert {c.lastTransitionTime for c in again.status.conditions} == {"2020-01-01T00:00:00Z"}


def test_dry_run_stores_nothing(dyn, namespace):
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    preview = dyn.server_side_apply(cms, body=configmap(namespace, a="1"), field_manager="m",
                                    dry_run="All")
    assert preview.data.a == "1"
    with pytest.raises(ApiException) as caught:
        cms.get(name="settings", namespace=namespace)
    assert caught.value.status == 404
    dyn.server_side_apply(cms, body=configmap(namespace, a="1"), field_manager="m")
    dyn.server_side_apply(cms, body=configmap(namespace, a="2"), field_manager="m",
                          dry_run="All")
    assert cms.get(name="settings", namespace=namespace).data.a == "1"
