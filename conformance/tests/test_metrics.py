"""Reading ztunnel's and a waypoint's metrics as the suite fetches them, on realistic text."""

from __future__ import annotations

import dataclasses
import math

import pytest

from conformance.metrics import Sample, label_sets, parse, select, total

SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
NOTSLEEP = "spiffe://cluster.local/ns/default/sa/notsleep"
PRODUCTPAGE = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"


def _request_line(source: str, principal: str, code: str, value: int) -> str:
    labels = {
        "reporter": "waypoint",
        "source_workload": source,
        "source_canonical_service": source,
        "source_canonical_revision": "latest",
        "source_workload_namespace": "default",
        "source_principal": principal,
        "source_app": source,
        "source_version": "",
        "source_cluster": "Kubernetes",
        "destination_workload": "productpage-v1",
        "destination_workload_namespace": "default",
        "destination_principal": PRODUCTPAGE,
        "destination_app": "productpage",
        "destination_version": "v1",
        "destination_service": "productpage.default.svc.cluster.local",
        "destination_canonical_service": "productpage",
        "destination_canonical_revision": "v1",
        "destination_service_name": "productpage",
        "destination_service_namespace": "default",
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "response_code": code,
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "mutual_tls",
    }
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"istio_requests_total{{{body}}} {value}"


# What a waypoint (Envoy) serves on :15020/stats/prometheus: classic text format.
WAYPOINT = "\n".join(
    [
        "# TYPE istio_requests_total counter",
        _request_line("sleep", SLEEP, "200", 97),
        _request_line("sleep", SLEEP, "503", 3),
        _request_line("notsleep", NOTSLEEP, "403", 12),
        "# TYPE istio_request_duration_milliseconds histogram",
        'istio_request_duration_milliseconds_bucket{reporter="waypoint",le="0.5"} 10',
        'istio_request_duration_milliseconds_bucket{reporter="waypoint",le="+Inf"} 112',
        'istio_request_duration_milliseconds_sum{reporter="waypoint"} 871.5',
        'istio_request_duration_milliseconds_count{reporter="waypoint"} 112',
        "# TYPE envoy_server_live gauge",
        "envoy_server_live 1",
        "",
    ]
)

# What ztunnel serves: OpenMetrics-style, counters declared without _total, # EOF.
ZTUNNEL = """\
# HELP istio_tcp_connections_opened The total number of TCP connections opened.
# TYPE istio_tcp_connections_opened counter
istio_tcp_connections_opened_total{reporter="destination",source_workload="sleep",\
source_principal="spiffe://cluster.local/ns/default/sa/sleep",\
destination_workload="productpage-v1",\
destination_principal="spiffe://cluster.local/ns/default/sa/bookinfo-productpage",\
destination_service="productpage.default.svc.cluster.local",\
connection_security_policy="mutual_tls",request_protocol="tcp",response_flags="-"} 5
istio_tcp_connections_opened_total{reporter="source",source_workload="sleep",\
source_principal="spiffe://cluster.local/ns/default/sa/sleep",\
destination_workload="productpage-v1",\
destination_principal="spiffe://cluster.local/ns/default/sa/bookinfo-productpage",\
destination_service="productpage.default.svc.cluster.local",\
connection_security_policy="unknown",request_protocol="tcp",response_flags="-"} 5
# HELP istio_tcp_connections_closed The total number of TCP connections closed.
# TYPE istio_tcp_connections_closed counter
istio_tcp_connections_closed_total{reporter="destination",source_workload="notsleep",\
connection_security_policy="mutual_tls",response_flags="DENY"} 2
# HELP istio_xds_connection_terminations The total number of completed connections to xds.
# TYPE istio_xds_connection_terminations counter
istio_xds_connection_terminations_total{reason="Reconnect"} 1
# EOF
"""


def test_waypoint_requests_keep_their_exposed_name() -> None:
    samples = parse(WAYPOINT)
    requests = select(samples, "istio_requests_total")
    assert len(requests) == 3
    assert {s.labels["response_code"] for s in requests} == {"200", "503", "403"}
    assert requests[0].labels["source_principal"] == SLEEP
    assert requests[0].labels["source_version"] == ""
    assert requests[0].value == 97.0
    assert select(samples, "istio_requests") == []  # the family name is not a sample name
    assert total(samples, "istio_request_duration_milliseconds_count") == 112
    assert total(samples, "envoy_server_live") == 1


def test_select_by_exact_value_and_predicate() -> None:
    samples = parse(WAYPOINT)
    assert total(samples, "istio_requests_total", source_principal=SLEEP) == 100
    assert total(samples, "istio_requests_total", response_code="403") == 12
    assert (
        total(samples, "istio_requests_total", response_code=lambda code: code.startswith("5")) == 3
    )
    assert total(
        samples,
        "istio_requests_total",
        reporter="waypoint",
        destination_service="productpage.default.svc.cluster.local",
        connection_security_policy="mutual_tls",
    ) == (97 + 3 + 12)
    assert (
        total(samples, "istio_requests_total", source_principal=NOTSLEEP, response_code="200") == 0
    )


def test_missing_label_reads_as_empty() -> None:
    samples = parse(WAYPOINT)
    assert len(select(samples, "istio_requests_total", no_such_label="")) == 3
    assert select(samples, "istio_requests_total", no_such_label="x") == []
    seen: list[str] = []
    select(samples, "envoy_server_live", anything=lambda v: seen.append(v) or True)
    assert seen == [""]


def test_label_sets_are_label_names() -> None:
    samples = parse(WAYPOINT)
    (names,) = label_sets(samples, "istio_requests_total")
    assert {
        "reporter",
        "source_principal",
        "destination_principal",
        "connection_security_policy",
        "response_code",
        "destination_service",
    } <= names
    assert label_sets(samples, "istio_request_duration_milliseconds_bucket") == {
        frozenset({"reporter", "le"})
    }
    assert label_sets(samples, "absent_total") == set()


def test_ztunnel_openmetrics_text() -> None:
    samples = parse(ZTUNNEL)
    opened = select(samples, "istio_tcp_connections_opened_total", reporter="destination")
    assert len(opened) == 1
    assert opened[0].labels["connection_security_policy"] == "mutual_tls"
    assert opened[0].labels["destination_principal"] == PRODUCTPAGE
    assert total(samples, "istio_tcp_connections_opened_total") == 10
    assert total(samples, "istio_tcp_connections_closed_total", response_flags="DENY") == 2
    assert {s.name for s in samples} == {
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
        "istio_xds_connection_terminations_total",
    }
    assert label_sets(samples, "istio_tcp_connections_opened_total") == {
        frozenset(
            {
                "reporter",
                "source_workload",
                "source_principal",
                "destination_workload",
                "destination_principal",
                "destination_service",
                "connection_security_policy",
                "request_protocol",
                "response_flags",
            }
        )
    }


def test_counter_without_total_suffix_is_not_renamed() -> None:
    # prometheus_client on its own would report this sample as "envoy_cx_total".
    samples = parse('# TYPE envoy_cx counter\nenvoy_cx{cluster="a"} 4\n')
    assert samples == [Sample("envoy_cx", {"cluster": "a"}, 4.0)]


def test_escapes_special_values_and_crlf() -> None:
    text = (
        "# TYPE t gauge\r\n"
        't{path="/a\\"b\\\\c",msg="line\\nbreak"} +Inf\r\n'
        't{path="nan"} NaN\r\n'
        't{path="ts"} 1.5e3 1700000000000\r\n'
    )
    first, second, third = parse(text)
    assert first.labels == {"path": '/a"b\\c', "msg": "line\nbreak"}
    assert first.value == math.inf
    assert math.isnan(second.value)
    assert third.value == 1500.0


def test_empty_text_has_no_samples() -> None:
    assert parse("") == []
    assert parse("# just a comment\n") == []


def test_samples_are_frozen() -> None:
    sample = parse("up 1\n")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.value = 2.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("<html><body>upstream connect error</body></html>\n", "line 1: '<html>"),
        ('up 1\n# TYPE x gauge\nx{a="1" 2\n', "line 3: 'x{a=\"1\" 2'"),
        ("up 1\nup one\n", "line 2: 'up one'"),
        ("# TYPE broken\n", "line 1: '# TYPE broken'"),
        ('dup{a="1",a="2"} 1\n', "line 1"),
    ],
)
def test_invalid_exposition_names_the_line(text: str, where: str) -> None:
    with pytest.raises(ValueError, match="not Prometheus text exposition") as caught:
        parse(text)
    assert where in str(caught.value)
