"""Accept negotiation and list/watch options, read as the real API server reads them."""

from __future__ import annotations

import pytest

from clusters.local.apiserver import errors, listoptions
from clusters.local.apiserver.negotiation import negotiate, parse_accept

# The Accept headers real components send (client-go v0.36.1).
CLIENT_GO = "application/vnd.kubernetes.protobuf,application/json"  # istiod pkg/kube/util.go
METADATA_LIST = ("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;"
                 "g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;"
                 "g=meta.k8s.io;v=v1,application/json")  # client-go metadata/metadata.go List
METADATA_WATCH = METADATA_LIST.replace("PartialObjectMetadataList", "PartialObjectMetadata")
KUBECTL_GET = ("application/json;as=Table;v=v1;g=meta.k8s.io,"
               "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")


def test_parse_accept_orders_by_q_then_specificity():
    clauses = parse_accept("*/*;q=0.1, application/yaml;q=0.5, application/json;pretty=1, "
                           "text/*, garbage, a/b/c")
    assert [(c.type, c.subtype, c.q) for c in clauses] == [
        ("application", "json", 1.0), ("text", "*", 1.0), ("application", "yaml", 0.5),
        ("*", "*", 0.1)]
    assert clauses[0].params == {"pretty": "1"}


@pytest.mark.parametrize(("accept", "stream", "media", "transform"), [
    (CLIENT_GO, False, "application/json", None),
    (CLIENT_GO, True, "application/json", None),
    (METADATA_LIST, False, "application/json", "PartialObjectMetadataList"),
    (METADATA_WATCH, True, "application/json", "PartialObjectMetadata"),
    (KUBECTL_GET, False, "application/json", "Table"),
    ("", False, "application/json", None),
    ("*/*", False, "application/json", None),
    ("application/*", True, "application/json", None),
    ("application/yaml", False, "application/yaml", None),
    # a higher q wins over order
    ("application/json;q=0.5,application/yaml", False, "application/yaml", None),
    # a transform to something that is not meta.k8s.io is passed over, then plain JSON
    ("application/json;as=Table;g=example.com;v=v1,application/json", False,
     "application/json", None),
    ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", False, "application/json", "Table"),
    ("application/json;stream=watch", True, "application/json", None),
])
def test_negotiate_picks_what_a_real_server_would(accept, stream, media, transform):
    out = negotiate(accept, stream=stream)
    assert (out.media_type, out.transform) == (media, transform)


@pytest.mark.parametrize(("accept", "stream"), [
    ("application/vnd.kubernetes.protobuf", False),
    ("text/html", False),
    ("application/json;as=Foo;g=meta.k8s.io;v=v1", False),
    ("application/json;as=Table;g=meta.k8s.io;v=v2", False),
    ("application/yaml;stream=watch", True),
    # the first clause that can be answered has no stream form: 406, as the real server
    ("application/yaml,application/json", True),
])
def test_nothing_acceptable_is_406(accept, stream):
    with pytest.raises(errors.ApiError) as err:
        negotiate(accept, stream=stream)
    assert (err.value.code, err.value.reason) == (406, "NotAcceptable")
    assert "only the following media types are accepted: application/json" in err.value.message


# The query of client-go's first request of every informer (reflector.go watchList).
WATCH_LIST = {"watch": "true", "sendInitialEvents": "true",
              "resourceVersionMatch": "NotOlderThan", "allowWatchBookmarks": "true",
              "timeoutSeconds": "487"}


@pytest.mark.parametrize("rv", [None, "", "0", "17"])
def test_watch_list_request_is_valid(rv):
    query = dict(WATCH_LIST, **({"resourceVersion": rv} if rv is not None else {}))
    opts = listoptions.parse(query)
    assert opts.watch and opts.watch_list and opts.resource_version == (rv or "")


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"watch": "true", "sendInitialEvents": "true"}, "resourceVersionMatch",
     "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
    ({"watch": "true", "resourceVersionMatch": "NotOlderThan"}, "resourceVersionMatch",
     "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is "
     "provided"),
    ({"watch": "true", "sendInitialEvents": "false", "resourceVersionMatch": "Exact"},
     "resourceVersionMatch", 'Unsupported value: "Exact": supported values: "NotOlderThan"'),
    ({"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
      "resourceVersion": "1"}, "sendInitialEvents",
     "Forbidden: sendInitialEvents is forbidden for list"),
    ({"resourceVersionMatch": "NotOlderThan"}, "resourceVersionMatch",
     "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"),
    ({"resourceVersionMatch": "Exact", "resourceVersion": "0"}, "resourceVersionMatch",
     'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
])
def test_list_options_rejected_as_apimachinery_does(query, field, message):
    with pytest.raises(errors.ApiError) as err:
        listoptions.parse(query)
    status = err.value.status()
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["details"]["kind"] == "ListOptions"
    assert status["details"]["group"] == "meta.k8s.io"
    assert {"field": field, "message": message} in [
        {k: c[k] for k in ("field", "message")} for c in status["details"]["causes"]]
    assert status["message"].startswith('ListOptions.meta.k8s.io "" is invalid: ')


def test_booleans_parse_as_go_does():
    assert listoptions.parse({"watch": "1", "sendInitialEvents": "False",
                              "resourceVersionMatch": "NotOlderThan"}).send_initial_events is False
    with pytest.raises(errors.ApiError) as err:
        listoptions.parse({"watch": "yes"})
    assert err.value.code == 400
