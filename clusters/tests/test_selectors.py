"""Label and field selectors behave like apimachinery's, grammar and semantics."""

from __future__ import annotations

import pytest

from clusters.local.apiserver.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    check_field_selector,
    everything,
    field_value,
    format_label_selector,
    format_labels,
    label_selector_from_spec,
    nothing,
    parse_field_selector,
    parse_label_selector,
    selector_from_map,
)

# --------------------------------------------------------------------------- label grammar


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("   ", ""),
        ("app=web", "app=web"),
        ("app==web", "app==web"),
        ("app!=web", "app!=web"),
        ("app", "app"),
        ("!app", "!app"),
        ("app in (b,a)", "app in (a,b)"),
        ("app notin (x)", "app notin (x)"),
        ("  tier = db ,  app  in ( a , b )  ", "app in (a,b),tier=db"),
        ("x>3", "x>3"),
        ("x<3", "x<3"),
        ("app=", "app="),
        ("app in ()", "app in ()"),
        ("app in (a,,b)", "app in (,a,b)"),
        ("example.com/role=x", "example.com/role=x"),
        ("in in (in,notin)", "in in (in,notin)"),
        ("a=1,!b,c", "a=1,!b,c"),
    ],
)
def test_parse_and_canonical_string(text: str, canonical: str) -> None:
    assert str(parse_label_selector(text)) == canonical


def test_canonical_string_reparses_to_the_same_selector() -> None:
    sel = parse_label_selector("b notin (y,x), a in (2,1), !c, d")
    assert parse_label_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("app=(web)", "'('"),
        ("app in web", "'web'"),
        ("app in (a", "''"),
        ("app in (a b)", "'b'"),
        ("app=web,", "''"),
        ("app=web x", "'x'"),
        (",app", "','"),
        ("!", "''"),
        ("!app=web", "'='"),
        ("app in (a,b", "''"),
        ("app ~ x", "'~'"),
        ("=web", "'='"),
    ],
)
def test_syntax_errors_name_the_bad_token(text: str, token: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert f"found {token}" in str(info.value)


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("-app=web", "-app"),
        ("app=-web", "-web"),
        ("a/b/c=x", "a/b/c"),
        ("/name=x", "/name"),
        ("Example.com/x=y", "Example.com/x"),
        ("k=" + "v" * 64, "v" * 64),
        ("k" * 64, "k" * 64),
        ("app=a b", "b"),
        ("app in (a$)", "a$"),
        ("x>abc", "abc"),
    ],
)
def test_invalid_keys_and_values_are_rejected(text: str, bad: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert bad in str(info.value)


def test_longest_valid_key_and_value_are_accepted() -> None:
    key = "a" * 63
    value = "b" * 63
    prefix = ".".join(["c" * 63] * 3) + ".dd"  # 195 chars of DNS subdomain
    sel = parse_label_selector(f"{prefix}/{key}={value}")
    assert sel.matches({f"{prefix}/{key}": value})


# --------------------------------------------------------------------------- label matching

LABELS = {"app": "web", "tier": "front", "n": "5"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),  # != matches objects without the label
        ("missing notin (x)", True),
        ("missing in (x)", False),
        ("missing=", False),  # = requires the label, even for the empty value
        ("app in (db,web)", True),
        ("app notin (db,web)", False),
        ("app", True),
        ("!app", False),
        ("missing", False),
        ("!missing", True),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("n>4", True),
        ("n>5", False),
        ("n<6", True),
        ("app>1", False),  # non-integer label never compares
        ("missing<1", False),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is expected


def test_matches_none_labels_as_empty() -> None:
    assert parse_label_selector("").matches(None)
    assert parse_label_selector("!app").matches(None)
    assert not parse_label_selector("app").matches(None)


def test_everything_and_nothing() -> None:
    assert everything().matches({}) and everything().empty
    assert not nothing().matches({}) and not nothing().matches({"a": "b"})
    assert not nothing().empty
    assert str(everything()) == str(nothing()) == ""
    assert parse_label_selector("") == LabelSelector()


def test_exact_match() -> None:
    sel = parse_label_selector("app=web,tier in (a),x in (1,2),y!=3")
    assert sel.exact_match("app") == "web"
    assert sel.exact_match("tier") == "a"
    assert sel.exact_match("x") is None
    assert sel.exact_match("y") is None


# --------------------------------------------------------------------------- object form


def test_spec_none_matches_nothing_and_empty_matches_everything() -> None:
    assert not label_selector_from_spec(None).matches({"a": "b"})
    assert label_selector_from_spec(None, none_matches_everything=True).matches({"a": "b"})
    assert label_selector_from_spec({}).matches({"a": "b"})
    assert label_selector_from_spec({"matchLabels": {}, "matchExpressions": []}).empty


def test_spec_match_labels_and_expressions() -> None:
    sel = label_selector_from_spec(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert str(sel) == "app=web,env notin (prod),!legacy,team,tier in (a,b)"
    assert sel.matches({"app": "web", "tier": "a", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "legacy": "1"})
    assert not sel.matches({"app": "web", "tier": "a", "team": "x", "env": "prod"})
    assert not sel.matches({"app": "web", "tier": "c", "team": "x"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}, "Equals"),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "empty"),
        ({"matchLabels": {"bad key": "x"}}, "bad key"),
        ({"matchLabels": {"k": "bad value"}}, "bad value"),
    ],
)
def test_spec_errors(spec: dict, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        label_selector_from_spec(spec)
    assert message in str(info.value)


def test_selector_from_map() -> None:
    sel = selector_from_map({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert not sel.matches({"a": "1"})
    assert selector_from_map({}).matches({"x": "y"})
    assert selector_from_map(None).matches({"x": "y"})
    assert not selector_from_map(None, none_matches_everything=False).matches({"x": "y"})
    with pytest.raises(SelectorError):
        selector_from_map({"k": "not valid"}, validate=True)


def test_formatting_helpers() -> None:
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == format_labels(None) == "<none>"
    assert format_label_selector({"matchLabels": {"app": "x"}}) == "app=x"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({"matchExpressions": [{"key": "a", "operator": "?"}]}) == (
        "<error>"
    )


# --------------------------------------------------------------------------- field selectors

POD = {
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always"},
    "status": {"phase": "Running", "podIPs": [{"ip": "198.18.0.5"}], "podIP": "198.18.0.5"},
}


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("metadata.name=web-1", "metadata.name=web-1"),
        ("metadata.name==web-1", "metadata.name=web-1"),
        ("status.phase!=Running", "status.phase!=Running"),
        ("spec.nodeName=", "spec.nodeName="),
        ("status.phase=Running,metadata.name=x", "metadata.name=x,status.phase=Running"),
        (r"metadata.name=a\,b\=c\\d", r"metadata.name=a\,b\=c\\d"),
        (" metadata.name = x ", "metadata.name=x"),
    ],
)
def test_parse_field_selector(text: str, canonical: str) -> None:
    assert str(parse_field_selector(text)) == canonical


def test_field_value_escapes_are_decoded() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.requirements[0].value == "a,b=c\\d"
    assert sel.matches({"metadata": {"name": "a,b=c\\d"}})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("metadata.name", "can't understand 'metadata.name'"),
        ("a=b,c", "can't understand 'c'"),
        ("=x", "missing field name"),
        (r"metadata.name=a\x", r"\x"),
        ("metadata.name=a\\", "escape"),
        ("metadata.name=a=b", "unescaped character '='"),
    ],
)
def test_field_selector_syntax_errors(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_field_selector(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metadata.name=web-1", True),
        ("metadata.name=web-2", False),
        ("metadata.namespace=default,status.phase=Running", True),
        ("spec.nodeName=node-a", True),
        ("spec.nodeName=", False),
        ("spec.nodeName!=", True),
        ("status.podIP=198.18.0.5", True),
        ("spec.schedulerName=", True),  # missing field compares as ""
        ("spec.hostNetwork=false", True),  # Go zero value, not ""
        ("spec.host=node-a", True),  # legacy alias of spec.nodeName
        ("status.phase!=Pending", True),
    ],
)
def test_field_matching_on_pod(text: str, expected: bool) -> None:
    assert parse_field_selector(text).matches(POD) is expected


def test_unbound_pods_match_empty_node_name() -> None:
    unbound = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=").matches(unbound)
    assert not parse_field_selector("spec.nodeName!=").matches(unbound)


def test_field_value_special_cases() -> None:
    event = {
        "kind": "Event",
        "type": "Warning",
        "involvedObject": {"name": "web-1", "uid": "u-1", "kind": "Pod"},
        "source": {"component": "kubelet"},
    }
    assert field_value(event, "involvedObject.uid") == "u-1"
    assert field_value(event, "source") == "kubelet"
    assert field_value({"kind": "Event", "reportingComponent": "ctl"}, "source") == "ctl"
    assert field_value({"kind": "Node", "spec": {"unschedulable": True}}, "spec.unschedulable") == (
        "true"
    )
    assert field_value({"kind": "Node"}, "spec.unschedulable") == "false"
    assert field_value({"kind": "Job", "status": {"succeeded": 2}}, "status.successful") == "2"
    pod_v6 = {"kind": "Pod", "status": {"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]}}
    assert field_value(pod_v6, "status.podIP") == "fd00::1"
    assert field_value({"spec": {"ports": [1]}}, "spec.ports") == ""


def test_field_selector_helpers() -> None:
    sel = parse_field_selector("metadata.name=x,status.phase!=Failed")
    assert sel.fields == {"metadata.name", "status.phase"}
    assert sel.exact_match("metadata.name") == "x"
    assert sel.exact_match("status.phase") is None
    assert FieldSelector().empty and FieldSelector().matches({})


def test_check_field_selector() -> None:
    check_field_selector(parse_field_selector("spec.nodeName=a,status.phase=Running"), "Pod")
    check_field_selector(parse_field_selector("metadata.name=a"), "Widget")
    check_field_selector(
        parse_field_selector("spec.color=red"), "Widget", extra_fields=["spec.color"]
    )
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.foo$"):
        check_field_selector(parse_field_selector("spec.foo=x"), "Pod")
    with pytest.raises(SelectorError, match=r"metadata\.namespace"):
        check_field_selector(parse_field_selector("metadata.namespace=x"), "Node")
    with pytest.raises(SelectorError, match=r"spec\.color"):
        check_field_selector(parse_field_selector("spec.color=red"), "Widget")
