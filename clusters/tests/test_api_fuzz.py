"""The local API server fed generated malformed objects, selectors and patches.

Whatever a client sends, a Kubernetes API server answers with a ``Status``: a 4xx that
says what is wrong (for an invalid object, ``details.causes`` naming each field), and
never a 5xx; and it keeps serving.  The properties start from valid objects of the
kinds the harness serves (built-in kinds, Istio's and Gateway API's) and break them:
a value of the wrong type somewhere, huge numbers, unicode, deep nesting, unknown
fields, bad names, labels and selectors, and patches of every content type.

In CI each property tries a fixed, derandomized set of inputs (a few seconds); set
``AMBIENT_FUZZ_EXAMPLES=N`` for a longer, random run (``./run fuzz``).
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from .rawkube import RawKube

pytestmark = pytest.mark.slow

FUZZ = settings(
    max_examples=int(os.environ.get("AMBIENT_FUZZ_EXAMPLES", "120")),
    derandomize="AMBIENT_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)
CRDS = Path(__file__).resolve().parents[2] / "reference-impl/ambient_ref/manifests/crds.yaml"
NS = "fuzz"

POD_SPEC = {"containers": [{"name": "c", "image": "curlimages/curl",
                            "command": ["sleep", "1"], "ports": [{"containerPort": 80}]}]}
SEEDS: dict[str, tuple[str, dict[str, Any]]] = {
    "configmap": (f"/api/v1/namespaces/{NS}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "b"}},
        "data": {"k": "v"}}),
    "pod": (f"/api/v1/namespaces/{NS}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": POD_SPEC}),
    "service": (f"/api/v1/namespaces/{NS}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    "deployment": (f"/apis/apps/v1/namespaces/{NS}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}}, "spec": POD_SPEC}}}),
    "authorizationpolicy": (f"/apis/security.istio.io/v1/namespaces/{NS}/authorizationpolicies", {
        "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "action": "DENY",
                 "rules": [{"from": [{"source": {"principals": ["a/b"]}}]}]}}),
    "httproute": (f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "x"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [
            {"backendRefs": [{"name": "x", "port": 80, "weight": 90}]}]}}),
}


class Deep(dict):  # type: ignore[type-arg]
    """Nesting ``depth`` levels deep, shown as one line in a falsifying example (the
    printer recurses as deep as the value)."""

    def __init__(self, depth: int) -> None:
        value: Any = "bottom"
        for _ in range(depth - 1):
            value = {"a": [value]}
        super().__init__(a=[value])
        self.depth = depth

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<{self.depth} levels of {{'a': [...]}}>")


bad_values = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    st.booleans(), st.none(),
    st.text(max_size=50),
    st.sampled_from(["\u0000", "\ud7ff\ufffd", "😀" * 50, "a" * 70000, "-1", "1e309",
                     "0x10", " ", "a=b,c", "!x", "x in (", "*", "../../etc"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    st.integers(min_value=30, max_value=100).map(Deep),
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


@st.composite
def broken_objects(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(SEEDS)))
    url, seed = SEEDS[kind]
    obj = copy.deepcopy(seed)
    obj["metadata"]["name"] = f"f-{uuid.uuid4().hex[:10]}"
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(obj) if p and p[:1] != ("apiVersion",)]
        path = draw(st.sampled_from(paths))
        parent = obj
        for step in path[:-1]:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "replace", "unknown-field", "drop"]))
        if how == "replace" or not isinstance(parent, dict):
            parent[path[-1]] = draw(bad_values)
        elif how == "unknown-field":
            parent[draw(st.text(min_size=1, max_size=12))] = draw(bad_values)
        else:
            del parent[path[-1]]
        event(f"{kind}: {how}")
    return kind, url, obj


@pytest.fixture(scope="module")
def api(cluster) -> Iterator[RawKube]:
    kube = RawKube(str(cluster.kubeconfig))
    crds = [d for d in yaml.safe_load_all(CRDS.read_text()) if d]
    cluster.apply(crds)
    created = kube.request("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, accept=None)
    assert created.status in (201, 409), created.body[:300]
    yield kube
    kube.request("DELETE", f"/api/v1/namespaces/{NS}", accept=None)


def judged(reply: Any, what: str, *, objects: bool = True) -> int:
    """The reply's status, once it is a proper answer: never a 5xx, an error is a
    ``Status`` with a message, and an invalid object names each field at fault (a
    patch that cannot be applied at all is about the patch: its message says why)."""
    assert reply.status < 500, f"{what}: {reply.status} {reply.body[:500]!r}"
    if reply.status >= 400:
        doc = reply.json()
        assert doc.get("kind") == "Status" and doc.get("message"), (what, doc)
        if reply.status == 422 and (objects or "could not be applied" not in doc["message"]):
            causes = (doc.get("details") or {}).get("causes") or []
            assert causes and all(c.get("field") for c in causes), (what, doc)
    event(f"status {reply.status}")
    return reply.status


def still_serving(api: RawKube) -> None:
    assert api.request("GET", "/version", accept=None).status == 200


@FUZZ
@given(case=broken_objects(), method=st.sampled_from(["POST", "PUT"]))
# found by longer runs (each was a 500): an unknown field named "\x1f" (its Warning
# header), 100 levels of nesting, ``spec: null``, a name that is an object
@example(case=("authorizationpolicy", SEEDS["authorizationpolicy"][0],
               {**SEEDS["authorizationpolicy"][1], "\x1f": 0}), method="POST")
@example(case=("authorizationpolicy", SEEDS["authorizationpolicy"][0],
               {**SEEDS["authorizationpolicy"][1], "kind": Deep(100)}), method="POST")
@example(case=("deployment", SEEDS["deployment"][0],
               {**SEEDS["deployment"][1], "spec": None}), method="POST")
@example(case=("authorizationpolicy", SEEDS["authorizationpolicy"][0],
               {**SEEDS["authorizationpolicy"][1], "metadata": {"name": {"a": 1}}}),
         method="POST")
def test_broken_objects_are_refused_naming_the_field_never_a_5xx(api, case, method):
    kind, url, obj = case
    name = obj["metadata"].get("name") if isinstance(obj.get("metadata"), dict) else None
    target = f"{url}/{quote(str(name), safe='')}" if method == "PUT" and name else url
    status = judged(api.request(method, target, obj, accept=None), f"{method} {kind} {obj!r}"[:300])
    if status in (200, 201) and isinstance(name, str):
        api.request("DELETE", f"{url}/{quote(name, safe='')}", accept=None)
    still_serving(api)


selector_text = st.one_of(st.text(max_size=40), st.sampled_from([
    "a in (b", "a notin ()", "!!a", "a==b==c", "a,=b", "x.y/z=w", "a!=", "metadata.name=",
    "spec.nodeName==n,foo=bar", "a" * 5000, "=", ",", "a in (b,c),!d"]))


@FUZZ
@example(kind="configmap", label="a" * 5000, field="a" * 5000, limit=None)  # a 10 kB URL
@given(kind=st.sampled_from(sorted(SEEDS)), label=selector_text, field=selector_text,
       limit=st.one_of(st.none(), st.text(max_size=6), st.integers(-5, 10**12)))
def test_bad_selectors_and_list_options_are_refused_never_a_5xx(api, kind, label, field, limit):
    url, _ = SEEDS[kind]
    query = f"labelSelector={quote(label, safe='')}&fieldSelector={quote(field, safe='')}"
    if limit is not None:
        query += f"&limit={quote(str(limit), safe='')}"
    judged(api.request("GET", f"{url}?{query}", accept=None), f"list {kind}?{query}"[:300])
    still_serving(api)


patch_types = st.sampled_from(["application/merge-patch+json", "application/json-patch+json",
                               "application/strategic-merge-patch+json",
                               "application/apply-patch+yaml", "text/plain"])
json_patch_ops = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
     "path": st.sampled_from(["/metadata/labels/a", "/data/k", "/spec/replicas", "", "/",
                              "/metadata/name", "/~2", "/a/-/b", "/spec/containers/9"])},
    optional={"value": bad_values, "from": st.sampled_from(["/data", "/x", ""])}), max_size=4)


@FUZZ
@given(kind=st.sampled_from(["configmap", "deployment", "authorizationpolicy"]),
       content_type=patch_types,
       body=st.one_of(json_patch_ops, bad_values, st.builds(dict, metadata=bad_values),
                      st.builds(dict, spec=bad_values), st.builds(dict, data=bad_values)))
@example(kind="configmap", content_type="application/merge-patch+json", body={"metadata": 0})
def test_bad_patches_are_refused_never_a_5xx(api, kind, content_type, body):
    url, seed = SEEDS[kind]
    obj = copy.deepcopy(seed)
    obj["metadata"]["name"] = f"p-{uuid.uuid4().hex[:10]}"
    assert api.request("POST", url, obj, accept=None).status == 201
    target = f"{url}/{obj['metadata']['name']}"
    if content_type == "application/apply-patch+yaml":
        target += "?fieldManager=fuzz"
    try:
        judged(api.request("PATCH", target, body, accept=None, content_type=content_type),
               f"PATCH {kind} {content_type} {body!r}"[:300], objects=False)
        still_serving(api)
    finally:
        api.request("DELETE", target.split("?")[0], accept=None)


def test_warning_headers_are_quoted_as_kubernetes_quotes_them() -> None:
    """Found by the property above: a field named "\\x1f" put a control character in
    the Warning header, and aiohttp refused to send the response at all."""
    from clusters.local.apiserver.handlers import warning_header

    assert warning_header(['unknown field "spec.x"', "a\\b"]) == (
        '299 - "unknown field \\"spec.x\\"", 299 - "a\\\\b"')
    assert warning_header(['unknown field "\x1f"', "kept"]) == '299 - "kept"'
    assert warning_header(["\x00"]) == ""
