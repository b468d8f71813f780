"""Tests of server-side apply as pure functions (``apply.py``, ``typedvalue.py``,
``fieldset.py``, ``applyschema.py``).

Where a case exists in ``sigs.k8s.io/structured-merge-diff/v6/merge`` (the library
the real API server applies with), it is ported with its schema, operations and
expected object and owners, named after it; list order in those expectations is
what a real server produces.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.local.apiserver import apply, errors
from clusters.local.apiserver.applyschema import (
    LIST,
    MAP,
    SCALAR_SHAPE,
    Shape,
    crd_shape,
    model_shape,
)
from clusters.local.apiserver.fieldset import (
    FieldsDoc,
    FieldSet,
    field,
    key_element,
    path_string,
    value_element,
)
from clusters.local.apiserver.typedvalue import compare, merge, to_field_set


def struct(**fields: Shape) -> Shape:
    return Shape(MAP, fields=lambda: fields)


def keyed(item: Shape, *keys: str) -> Shape:
    return Shape(LIST, element=item, keys=keys)


def set_of(item: Shape = SCALAR_SHAPE) -> Shape:
    return Shape(LIST, element=item, keys=())


def run(shape: Shape, ops: list[tuple[str, str, dict[str, Any]]], *,
        custom: bool = True) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Run ("apply" | "force" | "update", manager, object) operations from an empty
    start, as structured-merge-diff's test fixture does; return the object (without
    metadata) and each manager's fields."""
    scope = apply.Scope(shape, "v1", custom=custom)
    live: dict[str, Any] | None = None
    for op, manager, doc in ops:
        if op in ("apply", "force"):
            live = apply.apply(scope, live, doc, manager, force=op == "force").obj
        else:
            new = copy.deepcopy(doc)
            managed = apply.record_update(scope, live, new, manager)
            if managed:
                new.setdefault("metadata", {})["managedFields"] = managed
            live = new
    assert live is not None
    return {k: v for k, v in live.items() if k != "metadata"}, owners(live)


def owners(obj: dict[str, Any]) -> dict[str, list[str]]:
    managers = apply.decode(obj.get("metadata", {}).get("managedFields"))
    return {key[0]: sorted(path_string(p) for p in entry.fields.paths())
            for key, entry in managers.items()}


# -- field sets and their wire format --------------------------------------------------


def test_fields_v1_round_trip_marks_members_that_have_children_with_a_dot():
    name_x = key_element({"name": "x"})
    port = key_element({"containerPort": 80, "protocol": "TCP"})
    fields = FieldSet.of(
        (field("spec"), field("containers"), name_x),
        (field("spec"), field("containers"), name_x, field("image")),
        (field("spec"), field("containers"), name_x, field("ports"), port),
        (field("metadata"), field("finalizers"), value_element("a")),
        (field("args"), ("i", 0)),
    )
    wire = fields.to_fields_v1()
    assert wire == {
        "f:args": {"i:0": {}},
        "f:metadata": {"f:finalizers": {'v:"a"': {}}},
        "f:spec": {"f:containers": {'k:{"name":"x"}': {
            ".": {}, "f:image": {},
            "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {}}}}},
    }
    assert FieldSet.from_fields_v1(wire) == fields


def test_paths_print_as_the_api_server_names_them_in_conflicts():
    path = (field("spec"), field("containers"), key_element({"name": "nginx"}),
            field("ports"), key_element({"protocol": "TCP", "containerPort": 80}))
    assert path_string(path) == ('.spec.containers[name="nginx"]'
                                 '.ports[containerPort=80,protocol="TCP"]')
    assert path_string((field("finalizers"), value_element("a"))) == '.finalizers[="a"]'


def test_written_fields_documents_cannot_be_changed_in_place():
    doc = FieldSet.of((field("data"), field("a"))).to_fields_v1()
    assert isinstance(doc, FieldsDoc) and copy.deepcopy(doc) is doc
    with pytest.raises(TypeError):
        doc["f:data"] = {}


def test_set_algebra():
    a = FieldSet.of((field("x"),), (field("y"), field("z")))
    b = FieldSet.of((field("y"), field("z")),)
    assert a.difference(b) == FieldSet.of((field("x"),))
    assert a.intersection(b) == b
    assert a.difference(FieldSet.of((field("w"),))) is a
    assert a.recursive_difference(FieldSet.of((field("y"),))) == FieldSet.of((field("x"),))


# -- structured-merge-diff's cases -------------------------------------------------------


def test_set_apply_update_apply_no_overlap():
    """merge/set_test.go: ownership of set items by value, and where new items go."""
    obj, own = run(struct(list=set_of()), [
        ("apply", "default", {"list": ["a", "c"]}),
        ("update", "controller", {"list": ["a", "b", "c", "d"]}),
        ("apply", "default", {"list": ["a", "aprime", "c", "cprime"]}),
    ])
    assert obj == {"list": ["a", "b", "aprime", "c", "d", "cprime"]}
    assert own == {"default": ['.list[="a"]', '.list[="aprime"]', '.list[="c"]',
                               '.list[="cprime"]'],
                   "controller": ['.list[="b"]', '.list[="d"]']}


def test_multiple_appliers_remove_one_keep_one():
    """merge/multiple_appliers_test.go: an applier drops items; a co-owned one stays."""
    item = struct(name=SCALAR_SHAPE, value=SCALAR_SHAPE)
    obj, own = run(struct(list=keyed(item, "name")), [
        ("apply", "apply-one", {"list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
        ("apply", "apply-two", {"list": [{"name": "c"}, {"name": "d"}]}),
        ("apply", "apply-one", {"list": [{"name": "a"}]}),
    ])
    assert obj == {"list": [{"name": "a"}, {"name": "c"}, {"name": "d"}]}
    assert own == {
        "apply-one": ['.list[name="a"]', '.list[name="a"].name'],
        "apply-two": ['.list[name="c"]', '.list[name="c"].name', '.list[name="d"]',
                      '.list[name="d"].name'],
    }


def test_multiple_appliers_remove_one_keep_one_with_dangling_subitem():
    """merge/multiple_appliers_test.go: what nobody else owns goes with the applier's
    item; what an updater added stays."""
    item = struct(name=SCALAR_SHAPE, value=set_of())
    obj, own = run(struct(listOfLists=keyed(item, "name")), [
        ("apply", "apply-one", {"listOfLists": [{"name": "a"}, {"name": "b", "value": ["c"]}]}),
        ("apply", "apply-two", {"listOfLists": [{"name": "b", "value": ["d"]}]}),
        ("update", "controller", {"listOfLists": [{"name": "a"},
                                                  {"name": "b", "value": ["c", "d", "e"]}]}),
        ("apply", "apply-one", {"listOfLists": [{"name": "a"}]}),
    ])
    assert obj == {"listOfLists": [{"name": "a"}, {"name": "b", "value": ["d", "e"]}]}
    assert own == {
        "apply-one": ['.listOfLists[name="a"]', '.listOfLists[name="a"].name'],
        "apply-two": ['.listOfLists[name="b"]', '.listOfLists[name="b"].name',
                      '.listOfLists[name="b"].value[="d"]'],
        "controller": ['.listOfLists[name="b"].value[="e"]'],
    }


LEAVES = struct(numeric=SCALAR_SHAPE, string=SCALAR_SHAPE, bool=SCALAR_SHAPE)


def test_leaf_apply_update_apply_with_conflict_then_force():
    """merge/leaf_test.go: changing an updater's field conflicts; force takes it."""
    ops = [("apply", "default", {"numeric": 1, "string": "string"}),
           ("update", "controller", {"numeric": 1, "string": "controller string", "bool": True})]
    with pytest.raises(errors.ApiError) as caught:
        run(LEAVES, [*ops, ("apply", "default", {"numeric": 2, "string": "user string"})])
    err = caught.value
    assert (err.code, err.reason) == (409, "Conflict")
    assert err.message == ('Apply failed with 1 conflict: conflict with "controller" using v1: '
                           ".string")
    assert err.causes == [{"reason": "FieldManagerConflict",
                           "message": 'conflict with "controller" using v1', "field": ".string"}]
    obj, own = run(LEAVES, [*ops, ("force", "default", {"numeric": 2, "string": "user string"})])
    assert obj == {"numeric": 2, "string": "user string", "bool": True}
    assert own == {"default": [".numeric", ".string"], "controller": [".bool"]}


def test_leaf_update_apply_omits():
    """merge/leaf_test.go: a field an updater took over stays when the applier drops it."""
    obj, own = run(LEAVES, [("apply", "default", {"numeric": 2}),
                            ("update", "controller", {"numeric": 1}),
                            ("apply", "default", {})])
    assert obj == {"numeric": 1}
    assert own == {"controller": [".numeric"]}


NESTED = struct(struct=struct(name=SCALAR_SHAPE, value=SCALAR_SHAPE))


def test_nested_struct_apply_remove_dangling():
    """merge/nested_test.go: applying null empties what the applier set."""
    obj, own = run(NESTED, [("apply", "default", {"struct": {"name": "a"}}),
                            ("apply", "default", {"struct": None})])
    assert obj == {"struct": {}}
    assert own == {"default": [".struct"]}


def test_nested_struct_apply_update_took_over_and_dict_dangling():
    """merge/nested_test.go: a field an updater changed is the updater's."""
    obj, _ = run(NESTED, [("apply", "default", {"struct": {"name": "a"}}),
                          ("update", "controller", {"struct": {"name": "b", "value": 1}}),
                          ("apply", "default", {"struct": None})])
    assert obj == {"struct": {"name": "b", "value": 1}}
    obj, _ = run(NESTED, [("apply", "default", {"struct": {"name": "a"}}),
                          ("update", "controller", {"struct": {"name": "a", "value": 1}}),
                          ("apply", "default", {"struct": {}})])
    assert obj == {"struct": {"value": 1}}


# -- built-in kinds ------------------------------------------------------------------------


CONFIGMAP = model_shape("V1ConfigMap")
DEPLOYMENT = model_shape("V1Deployment")
SERVICE = model_shape("V1Service")


def test_documented_example_managed_fields_of_an_apply():
    """The managedFields the Kubernetes docs show for an applied ConfigMap
    (kubernetes.io/docs/reference/using-api/server-side-apply/#field-management)."""
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "test-cm", "namespace": "default",
                           "labels": {"test-label": "test"}},
              "data": {"key": "some value"}}
    result = apply.apply(apply.Scope(CONFIGMAP, "v1"), None, config, "kubectl", force=False,
                         now=lambda: "2010-10-10T00:00:00Z")
    assert result.obj["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
        "time": "2010-10-10T00:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}},
    }]


def deployment(replicas: int = 1, ports: list[dict[str, Any]] | None = None,
               selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": selector or {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                         {"name": "nginx", "image": "nginx", "ports": ports or []}]}}}}


def test_container_ports_are_keyed_by_port_and_protocol_with_tcp_the_default():
    """A port applied without a protocol is the live port whose protocol the server
    defaulted to TCP (containerPort+protocol keys, protocol default TCP: k8s.io/api)."""
    scope = apply.Scope(DEPLOYMENT, "apps/v1", status_subresource=True)
    live = apply.apply(scope, None, deployment(ports=[{"containerPort": 80}]), "a",
                       force=False).obj
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"
    again = apply.apply(scope, live, deployment(ports=[{"containerPort": 80}]), "a",
                        force=False)
    assert again.obj["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}]
    assert not again.changed
    fields = again.obj["metadata"]["managedFields"][0]["fieldsV1"]
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert container["f:ports"] == {'k:{"containerPort":80,"protocol":"TCP"}': {
        ".": {}, "f:containerPort": {}}}
    # The selector is an atomic struct (LabelSelector is +structType=atomic).
    assert fields["f:spec"]["f:selector"] == {}


def test_an_atomic_map_conflicts_as_a_whole():
    """Service.spec.selector is +mapType=atomic: another applier's different selector
    is one conflict on the map, not a merge of keys."""
    scope = apply.Scope(SERVICE, "v1", status_subresource=True)
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"selector": {"app": "a"}}}
    live = apply.apply(scope, None, svc, "one", force=False).obj
    other = copy.deepcopy(svc)
    other["spec"]["selector"] = {"tier": "b"}
    with pytest.raises(errors.ApiError) as caught:
        apply.apply(scope, live, other, "two", force=False)
    assert [c["field"] for c in caught.value.causes] == [".spec.selector"]
    forced = apply.apply(scope, live, other, "two", force=True).obj
    assert forced["spec"]["selector"] == {"tier": "b"}
    assert owners(forced) == {"two": [".spec.selector"]}


def test_several_conflicts_are_grouped_by_manager():
    scope = apply.Scope(DEPLOYMENT, "apps/v1", status_subresource=True)
    live = apply.apply(scope, None, deployment(replicas=1), "alpha", force=False).obj
    changed = deployment(replicas=3, selector={"app": "other"})
    with pytest.raises(errors.ApiError) as caught:
        apply.apply(scope, live, changed, "beta", force=False)
    assert caught.value.message == ('Apply failed with 2 conflicts: conflicts with "alpha":\n'
                                    "- .spec.replicas\n- .spec.selector")


def test_reapplying_the_same_configuration_changes_nothing():
    scope = apply.Scope(DEPLOYMENT, "apps/v1", status_subresource=True)
    first = apply.apply(scope, None, deployment(), "istio-operator", force=True,
                        now=lambda: "2020-01-01T00:00:00Z").obj
    again = apply.apply(scope, first, deployment(), "istio-operator", force=True,
                        now=lambda: "2030-01-01T00:00:00Z")
    assert not again.changed
    assert again.obj == first  # the time of the entry moves only when the object does


def test_the_main_resource_does_not_own_status_and_status_owns_only_status():
    main = apply.Scope(DEPLOYMENT, "apps/v1", status_subresource=True)
    config = deployment()
    config["status"] = {"replicas": 5}
    obj = apply.apply(main, None, config, "m", force=False).obj
    assert "f:status" not in obj["metadata"]["managedFields"][0]["fieldsV1"]
    status = apply.Scope(DEPLOYMENT, "apps/v1", "status", status_subresource=True)
    report = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 9}, "status": {"replicas": 5}}
    obj = apply.apply(status, obj, report, "reporter", force=False).obj
    entry = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == "reporter")
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_status_reporters_own_their_own_conditions_and_remove_them_with_an_empty_list():
    """What istiod's status queue does: one field manager per reporter, each applying
    its conditions to /status with force; an empty list drops the reporter's own
    (istio/istio pilot/pkg/serviceregistry/ambient/statusqueue)."""
    scope = apply.Scope(SERVICE, "v1", "status", status_subresource=True)
    live = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {}}}

    def report(*types: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "status": {"conditions": [{"type": t, "status": "True", "reason": "R",
                                           "message": "", "lastTransitionTime": "x"}
                                          for t in types]}}

    live = apply.apply(scope, live, report("istio.io/WaypointBound"), "waypoint",
                       force=True).obj
    live = apply.apply(scope, live, report("istio.io/Other"), "other", force=True).obj
    assert [c["type"] for c in live["status"]["conditions"]] == [
        "istio.io/WaypointBound", "istio.io/Other"]
    live = apply.apply(scope, live, report(), "waypoint", force=True).obj
    assert [c["type"] for c in live["status"]["conditions"]] == ["istio.io/Other"]
    # The live object had no managedFields: its status was before-first-apply's.
    assert set(owners(live)) == {"other", "before-first-apply"}


# -- updates -------------------------------------------------------------------------------


def test_an_update_owns_what_it_changed_and_keeps_its_time_when_it_changed_nothing():
    scope = apply.Scope(CONFIGMAP, "v1")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    created = copy.deepcopy(cm)
    created["metadata"]["managedFields"] = apply.record_update(
        scope, None, cm, "kubectl-client-side-apply", now=lambda: "2020-01-01T00:00:00Z")
    assert created["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:data": {".": {}, "f:a": {}}}
    same = apply.record_update(scope, created, copy.deepcopy(created), "kubectl-edit",
                               now=lambda: "2030-01-01T00:00:00Z")
    assert same == created["metadata"]["managedFields"]
    changed = copy.deepcopy(created)
    changed["data"]["a"] = "2"
    out = apply.record_update(scope, created, changed, "kubectl-edit",
                              now=lambda: "2030-01-01T00:00:00Z")
    assert [(e["manager"], e["time"], e["fieldsV1"]) for e in out] == [
        # The map itself stays the creator's: a member without children is "{}".
        ("kubectl-client-side-apply", "2020-01-01T00:00:00Z", {"f:data": {}}),
        ("kubectl-edit", "2030-01-01T00:00:00Z", {"f:data": {"f:a": {}}}),
    ]


def test_managed_fields_reset_with_an_empty_list_stay_untracked_until_an_apply():
    scope = apply.Scope(CONFIGMAP, "v1")
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}
    live["metadata"]["managedFields"] = apply.record_update(scope, None, live, "creator")
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = []
    assert apply.record_update(scope, live, reset, "someone") is None
    del reset["metadata"]["managedFields"]
    applied = apply.apply(scope, reset, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "c"}, "data": {"b": "2"}},
                          "applier", force=False).obj
    assert owners(applied) == {"applier": [".data.b"],
                               "before-first-apply": [".data", ".data.a"]}


def test_more_than_ten_update_managers_fold_into_ancient_changes():
    scope = apply.Scope(CONFIGMAP, "v1")
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                           "data": {}}
    for i in range(12):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        new["metadata"]["managedFields"] = apply.record_update(
            scope, None if i == 0 else obj, new, f"writer-{i:02}",
            now=lambda i=i: f"2020-01-01T00:00:{i:02}Z")
        obj = new
    managers = owners(obj)
    # The three oldest became one entry (capmanagers.go merges until ten are left).
    assert len(managers) == 10
    assert not {"writer-00", "writer-01", "writer-02"} & managers.keys()
    assert managers["ancient-changes"] == [".data", ".data.k0", ".data.k1", ".data.k2"]


# -- custom resources ------------------------------------------------------------------------


CRD_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {
            "hosts": {"type": "array", "items": {"type": "string"},
                      "x-kubernetes-list-type": "set"},
            "rules": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "port": {"type": "integer"}}}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object", "properties": {
                          "port": {"type": "integer"},
                          "protocol": {"type": "string", "default": "TCP"}}}},
        }},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def test_custom_resources_follow_their_list_markers_and_atomic_by_default():
    shape = crd_shape(CRD_SCHEMA)
    obj = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"},
           "spec": {"hosts": ["a"], "rules": [{"name": "r", "port": 1}],
                    "ports": [{"port": 80}]},
           "status": {"conditions": [{"type": "Ready"}], "observed": {"x": 1}}}
    paths = sorted(path_string(p) for p in to_field_set(obj, shape).paths())
    assert paths == [".apiVersion", ".kind", ".metadata.name",
                     '.spec.hosts[="a"]', '.spec.ports[port=80,protocol="TCP"]',
                     '.spec.ports[port=80,protocol="TCP"].port', ".spec.rules",
                     # preserve-unknown-fields: maps granular, lists atomic.
                     ".status.conditions", ".status.observed", ".status.observed.x"]


def test_duplicate_items_in_an_applied_configuration_are_refused_with_their_path():
    config = deployment(ports=[{"containerPort": 80}, {"containerPort": 80}])
    with pytest.raises(errors.ApiError) as caught:
        apply.apply(apply.Scope(DEPLOYMENT, "apps/v1"), None, config, "m", force=False)
    assert caught.value.code == 500
    assert ('.spec.template.spec.containers[name="nginx"].ports: duplicate entries for key '
            '[containerPort=80,protocol="TCP"]') in caught.value.message


def test_compare_and_merge_leave_their_arguments_alone():
    shape = struct(list=keyed(struct(name=SCALAR_SHAPE, v=SCALAR_SHAPE), "name"))
    live = {"list": [{"name": "a", "v": 1}]}
    config = {"list": [{"name": "a", "v": 2}, {"name": "b"}]}
    before = copy.deepcopy((live, config))
    merged = merge(live, config, shape)
    assert merged == {"list": [{"name": "a", "v": 2}, {"name": "b"}]}
    changes = compare(live, merged, shape)
    assert [path_string(p) for p in changes.modified.paths()] == ['.list[name="a"].v']
    assert sorted(path_string(p) for p in changes.added.paths()) == [
        '.list[name="b"]', '.list[name="b"].name']
    assert (live, config) == before
