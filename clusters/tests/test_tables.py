"""Server-side printing matches the real API server's tables, cell for cell."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clusters.local.apiserver import printers
from clusters.local.apiserver.goformat import human_duration
from clusters.local.apiserver.tables import TableError, column_definitions, to_table

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    """An RFC 3339 timestamp that far before NOW."""
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def table(kind: str, *objs: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return to_table(kind, list(objs), now=NOW, **kw)


def row(kind: str, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """One object's cells keyed by column name."""
    t = table(kind, obj, **kw)
    names = [c["name"] for c in t["columnDefinitions"]]
    return dict(zip(names, t["rows"][0]["cells"], strict=True))


def meta(name: str = "x", created: str | None = None, **extra: Any) -> dict[str, Any]:
    created = created or ago(minutes=5)
    return {"name": name, "namespace": "default", "creationTimestamp": created, **extra}


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-2, "<invalid>"),
        (-1.5, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 10 * 60, "5h10m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (775 * 86400, "2y45d"),
        (8 * 365 * 86400, "8y"),
        (20 * 365 * 86400, "20y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


# --------------------------------------------------------------------------- table shape


def test_table_shape_and_metadata() -> None:
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": meta("p", labels={"a": "b"})}
    t = table("Pod", pod, resource_version="42", continue_token="abc", remaining_item_count=3)
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "42", "continue": "abc", "remainingItemCount": 3}
    for col in t["columnDefinitions"]:
        assert set(col) == {"name", "type", "format", "description", "priority"}
    assert t["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": pod["metadata"],
    }
    json.dumps(t)  # must serialise as-is
    assert table("Pod")["metadata"] == {}


def test_include_object() -> None:
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": meta("p")}
    assert table("Pod", pod, include_object="Object")["rows"][0]["object"] is pod
    assert table("Pod", pod, include_object="None")["rows"][0]["object"] is None
    assert table("Pod", pod, include_object="")["rows"][0]["object"]["kind"] == (
        "PartialObjectMetadata"
    )
    beta = table("Pod", pod, api_version="meta.k8s.io/v1beta1")
    assert beta["apiVersion"] == beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    with pytest.raises(TableError, match='unrecognized includeObject value: "Everything"'):
        table("Pod", pod, include_object="Everything")


def test_headers_can_be_left_out_for_later_watch_events() -> None:
    t = table("Pod", {"metadata": meta()}, include_headers=False)
    assert t["columnDefinitions"] == [] and len(t["rows"]) == 1


KINDS = [*sorted(printers._PRINTERS), "CustomResourceDefinition", "ClusterRole", "Widget"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_printer_fills_every_column(kind: str) -> None:
    """A cell per column, even for a bare object: kubectl rejects ragged tables."""
    for obj in ({}, {"metadata": meta()}):
        t = table(kind, obj)
        assert len(t["rows"][0]["cells"]) == len(t["columnDefinitions"])
    assert column_definitions(kind) == t["columnDefinitions"]


# --------------------------------------------------------------------------- pods


def container_status(name: str = "app", **state: Any) -> dict[str, Any]:
    status = {"name": name, "ready": False, "restartCount": 0, "state": state}
    if "running" in state:
        status["ready"] = True
    return status


def pod(*statuses: dict[str, Any], phase: str = "Running", **extra: Any) -> dict[str, Any]:
    names = [s["name"] for s in statuses] or ["app"]
    return {
        "kind": "Pod",
        "metadata": meta("web-1", created=ago(minutes=3, seconds=20)),
        "spec": {"containers": [{"name": n, "image": "img"} for n in names], **extra},
        "status": {"phase": phase, "containerStatuses": list(statuses)},
    }


def test_pod_columns() -> None:
    t = table("Pod", pod(container_status(running={})))
    assert [(c["name"], c["priority"]) for c in t["columnDefinitions"]] == [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]
    assert t["columnDefinitions"][0]["format"] == "name"


def test_running_pod() -> None:
    p = pod(container_status(running={}), nodeName="node-a")
    p["status"]["podIPs"] = [{"ip": "198.18.0.5"}]
    assert table("Pod", p)["rows"][0]["cells"] == [
        "web-1",
        "1/1",
        "Running",
        "0",
        "3m20s",
        "198.18.0.5",
        "node-a",
        "<none>",
        "<none>",
    ]
    assert "conditions" not in table("Pod", p)["rows"][0]


def test_pending_pod_shows_none_for_ip_and_node() -> None:
    r = row("Pod", pod(phase="Pending"))
    assert (r["Ready"], r["Status"], r["IP"], r["Node"]) == ("0/1", "Pending", "<none>", "<none>")


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ({"waiting": {"reason": "CrashLoopBackOff"}}, "CrashLoopBackOff"),
        ({"waiting": {"reason": "ErrImagePull"}}, "ErrImagePull"),
        ({"waiting": {"reason": "ContainerCreating"}}, "ContainerCreating"),
        ({"terminated": {"reason": "OOMKilled", "exitCode": 137}}, "OOMKilled"),
        ({"terminated": {"exitCode": 3}}, "ExitCode:3"),
        ({"terminated": {"exitCode": 0, "signal": 9}}, "Signal:9"),
    ],
)
def test_container_state_reasons(state: dict[str, Any], status: str) -> None:
    assert row("Pod", pod(container_status(**state)))["Status"] == status


def test_restarts_show_when_last_restart_was() -> None:
    cs = container_status(running={})
    cs["restartCount"] = 4
    cs["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=5)}}
    assert row("Pod", pod(cs))["Restarts"] == "4 (5m ago)"


def test_terminating_pod() -> None:
    p = pod(container_status(running={}))
    p["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row("Pod", p)["Status"] == "Terminating"
    p["status"]["reason"] = "NodeLost"
    assert row("Pod", p)["Status"] == "Unknown"
    done = pod(container_status(terminated={"reason": "Completed"}), phase="Succeeded")
    done["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert row("Pod", done)["Status"] == "Completed"


def test_completed_pod_row_condition() -> None:
    p = pod(container_status(terminated={"reason": "Completed", "exitCode": 0}), phase="Succeeded")
    r = table("Pod", p)["rows"][0]
    assert r["cells"][2] == "Completed"
    assert r["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]


def test_multi_container_readiness_and_completed_sidecar() -> None:
    p = pod(
        container_status("app", running={}),
        container_status("job", terminated={"reason": "Completed", "exitCode": 0}),
    )
    p["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    r = row("Pod", p)
    assert (r["Ready"], r["Status"]) == ("1/2", "NotReady")
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert row("Pod", p)["Status"] == "Running"


def test_init_containers() -> None:
    p = pod(container_status(waiting={"reason": "PodInitializing"}), phase="Pending")
    p["spec"]["initContainers"] = [{"name": "init-a"}, {"name": "init-b"}]
    p["status"]["initContainerStatuses"] = [
        container_status("init-a", terminated={"exitCode": 0}),
        container_status("init-b", running={}),
    ]
    assert row("Pod", p)["Status"] == "Init:1/2"
    p["status"]["initContainerStatuses"][1] = container_status(
        "init-b", waiting={"reason": "CrashLoopBackOff"}
    )
    assert row("Pod", p)["Status"] == "Init:CrashLoopBackOff"
    p["status"]["initContainerStatuses"][1] = container_status("init-b", terminated={"exitCode": 2})
    assert row("Pod", p)["Status"] == "Init:ExitCode:2"


def test_native_sidecar_counts_toward_ready() -> None:
    p = pod(container_status("app", running={}))
    p["spec"]["initContainers"] = [{"name": "proxy", "restartPolicy": "Always"}]
    sidecar = container_status("proxy", running={})
    sidecar["started"] = True
    p["status"]["initContainerStatuses"] = [sidecar]
    p["status"]["conditions"] = [{"type": "Initialized", "status": "True"}]
    assert (row("Pod", p)["Ready"], row("Pod", p)["Status"]) == ("2/2", "Running")


def test_scheduling_gated_and_readiness_gates() -> None:
    p = pod(phase="Pending", readinessGates=[{"conditionType": "x"}, {"conditionType": "y"}])
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
        {"type": "x", "status": "True"},
    ]
    r = row("Pod", p)
    assert (r["Status"], r["Readiness Gates"]) == ("SchedulingGated", "1/2")


# --------------------------------------------------------------------------- workloads


def test_deployment() -> None:
    d = {
        "metadata": meta("reviews", created=ago(days=2, hours=3)),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "reviews"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "i:1"}]}},
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert table("Deployment", d)["rows"][0]["cells"] == [
        "reviews",
        "2/3",
        3,
        2,
        "2d3h",
        "a",
        "i:1",
        "app=reviews",
    ]
    names = [c["name"] for c in table("Deployment", d)["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert row("Deployment", {"metadata": meta(), "spec": {}})["Ready"] == "0/1"


def test_replicaset_and_statefulset() -> None:
    rs = {
        "metadata": meta("rs"),
        "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}},
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    r = row("ReplicaSet", rs)
    assert (r["Desired"], r["Current"], r["Ready"], r["Age"], r["Selector"]) == (
        2,
        2,
        1,
        "5m",
        "a=b",
    )
    ss = {"metadata": meta("db"), "spec": {"replicas": 3}, "status": {"readyReplicas": 3}}
    assert row("StatefulSet", ss)["Ready"] == "3/3"


def test_daemonset() -> None:
    ds = {
        "metadata": meta("ztunnel"),
        "spec": {
            "selector": {"matchLabels": {"app": "ztunnel"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}},
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    cells = table("DaemonSet", ds)["rows"][0]["cells"]
    assert cells[:8] == ["ztunnel", 3, 3, 2, 3, 2, "kubernetes.io/os=linux", "5m"]
    assert cells[-1] == "app=ztunnel"
    assert row("DaemonSet", {"metadata": meta()})["Node Selector"] == "<none>"


def test_job() -> None:
    job = {
        "metadata": meta("migrate"),
        "spec": {"completions": 1},
        "status": {
            "succeeded": 1,
            "startTime": ago(minutes=4),
            "completionTime": ago(minutes=3, seconds=30),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    r = row("Job", job)
    assert (r["Status"], r["Completions"], r["Duration"]) == ("Complete", "1/1", "30s")
    assert row("Job", {"metadata": meta(), "spec": {"parallelism": 3}})["Completions"] == (
        "0/1 of 3"
    )


# --------------------------------------------------------------------------- networking


def svc(**spec: Any) -> dict[str, Any]:
    return {"metadata": meta("productpage"), "spec": spec}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "ports": [{"port": 9080, "protocol": "TCP"}],
            },
            ["ClusterIP", "10.96.0.10", "<none>", "9080/TCP"],
        ),
        (
            {
                "type": "NodePort",
                "clusterIPs": ["10.96.0.11"],
                "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}],
            },
            ["NodePort", "10.96.0.11", "<none>", "80:30080/TCP,53/UDP"],
        ),
        (
            {"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 443}]},
            ["LoadBalancer", "10.96.0.12", "<pending>", "443/TCP"],
        ),
        (
            {"clusterIP": "None", "ports": []},
            ["ClusterIP", "None", "<none>", "<none>"],
        ),
        (
            {"type": "ExternalName", "externalName": "example.com"},
            ["ExternalName", "<none>", "example.com", "<none>"],
        ),
    ],
)
def test_service(spec: dict[str, Any], expected: list[str]) -> None:
    cells = table("Service", svc(**spec))["rows"][0]["cells"]
    assert cells[1:5] == expected
    assert cells[5] == "5m"


def test_service_load_balancer_ingress_and_selector() -> None:
    s = svc(type="LoadBalancer", clusterIPs=["10.0.0.1"], selector={"app": "x", "v": "1"})
    s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}, {"hostname": "lb.example"}]}}
    r = row("Service", s)
    assert (r["External-IP"], r["Selector"]) == ("192.0.2.2,lb.example", "app=x,v=1")


def test_endpoints() -> None:
    ep = {
        "metadata": meta("reviews"),
        "subsets": [
            {
                "addresses": [{"ip": "198.18.0.5"}, {"ip": "198.18.0.6"}],
                "ports": [{"port": 9080, "protocol": "TCP"}],
            }
        ],
    }
    assert row("Endpoints", ep)["Endpoints"] == "198.18.0.5:9080,198.18.0.6:9080"
    ep["subsets"][0]["addresses"] += [{"ip": "198.18.0.7"}, {"ip": "fd00::8"}, {"ip": "198.18.0.9"}]
    assert row("Endpoints", ep)["Endpoints"] == (
        "198.18.0.5:9080,198.18.0.6:9080,198.18.0.7:9080 + 2 more..."
    )
    ep["subsets"][0]["addresses"] = [{"ip": "fd00::8"}]
    assert row("Endpoints", ep)["Endpoints"] == "[fd00::8]:9080"
    assert row("Endpoints", {"metadata": meta()})["Endpoints"] == "<none>"
    headless = {"metadata": meta(), "subsets": [{"addresses": [{"ip": "198.18.0.5"}]}]}
    assert row("Endpoints", headless)["Endpoints"] == "198.18.0.5"


def test_endpointslice() -> None:
    eps = {
        "metadata": meta("reviews-abc"),
        "addressType": "IPv4",
        "ports": [{"port": 9080}, {"name": "grpc"}, {}],
        "endpoints": [{"addresses": ["198.18.0.5"]}, {"addresses": ["198.18.0.6"]}],
    }
    r = row("EndpointSlice", eps)
    assert (r["AddressType"], r["Ports"], r["Endpoints"]) == (
        "IPv4",
        "9080,grpc,*",
        "198.18.0.5,198.18.0.6",
    )
    assert row("EndpointSlice", {"metadata": meta()})["Endpoints"] == "<unset>"


# --------------------------------------------------------------------------- cluster objects


def test_node() -> None:
    node = {
        "metadata": {
            "name": "node-a",
            "creationTimestamp": ago(hours=5, minutes=10),
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "x"},
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
            "nodeInfo": {"kubeletVersion": "v1.37.0"},
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}],
        },
    }
    assert table("Node", node)["rows"][0]["cells"] == [
        "node-a",
        "Ready,SchedulingDisabled",
        "control-plane,x",
        "5h10m",
        "v1.37.0",
        "172.18.0.2",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]
    plain = {
        "metadata": meta("n"),
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
    }
    assert (row("Node", plain)["Status"], row("Node", plain)["Roles"]) == ("NotReady", "<none>")
    assert row("Node", {"metadata": meta("n")})["Status"] == "Unknown"


def test_namespace() -> None:
    ns = {"metadata": meta("istio-system"), "status": {"phase": "Terminating"}}
    assert table("Namespace", ns)["rows"][0]["cells"] == ["istio-system", "Terminating", "5m"]


def test_event() -> None:
    ev = {
        "metadata": meta("web-1.17a"),
        "type": "Warning",
        "reason": "BackOff",
        "message": " Back-off restarting failed container \n",
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": ago(minutes=10),
        "lastTimestamp": ago(seconds=30),
        "count": 7,
    }
    assert table("Event", ev)["rows"][0]["cells"] == [
        "30s",
        "Warning",
        "BackOff",
        "pod/web-1",
        "spec.containers{app}",
        "kubelet, node-a",
        "Back-off restarting failed container",
        "10m",
        7,
        "web-1.17a",
    ]
    names = [(c["name"], c["priority"]) for c in table("Event", ev)["columnDefinitions"]]
    assert [n for n, p in names if p == 0] == ["Last Seen", "Type", "Reason", "Object", "Message"]


def test_event_timestamps_fall_back() -> None:
    new_style = {
        "metadata": meta("e"),
        "eventTime": "2025-06-01T11:58:00.000000Z",
        "reportingComponent": "istiod",
        "involvedObject": {"kind": "Namespace"},
    }
    r = row("Event", new_style)
    assert (r["Last Seen"], r["First Seen"], r["Count"], r["Object"], r["Source"]) == (
        "2m",
        "2m",
        1,
        "namespace",
        "istiod",
    )
    series = dict(new_style, series={"count": 5, "lastObservedTime": "2025-06-01T11:59:50.000000Z"})
    r = row("Event", series)
    assert (r["Last Seen"], r["Count"]) == ("10s", 5)


def test_serviceaccount_configmap_secret() -> None:
    sa = {"metadata": meta("default"), "secrets": [{"name": "t"}]}
    assert table("ServiceAccount", sa)["rows"][0]["cells"] == ["default", 1, "5m"]
    cm = {
        "metadata": meta("istio"),
        "data": {"mesh": "", "meshNetworks": ""},
        "binaryData": {"b": ""},
    }
    assert table("ConfigMap", cm)["rows"][0]["cells"] == ["istio", 3, "5m"]
    sec = {"metadata": meta("cacerts"), "type": "kubernetes.io/tls", "data": {"a": "", "b": ""}}
    assert table("Secret", sec)["rows"][0]["cells"] == ["cacerts", "kubernetes.io/tls", 2, "5m"]


def test_rbac_and_webhooks() -> None:
    rb = {
        "metadata": meta("istiod"),
        "roleRef": {"kind": "ClusterRole", "name": "istiod"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "istiod", "namespace": "istio-system"},
            {"kind": "User", "name": "alice"},
            {"kind": "User", "name": "bob"},
        ],
    }
    assert table("ClusterRoleBinding", rb)["rows"][0]["cells"] == [
        "istiod",
        "ClusterRole/istiod",
        "5m",
        "alice, bob",
        "",
        "istio-system/istiod",
    ]
    wh = {"metadata": meta("istio-sidecar-injector"), "webhooks": [{}, {}]}
    assert row("MutatingWebhookConfiguration", wh)["Webhooks"] == 2


def test_default_convertor_kinds_print_created_at() -> None:
    crd = {
        "metadata": {"name": "gateways.gateway.networking.k8s.io", "creationTimestamp": ago(days=1)}
    }
    t = table("CustomResourceDefinition", crd)
    assert [(c["name"], c["type"]) for c in t["columnDefinitions"]] == [
        ("Name", "string"),
        ("Created At", "date"),
    ]
    assert t["rows"][0]["cells"] == ["gateways.gateway.networking.k8s.io", "2025-05-31T12:00:00Z"]
    offset = {"metadata": {"name": "r", "creationTimestamp": "2025-05-31T14:00:00+02:00"}}
    assert table("ClusterRole", offset)["rows"][0]["cells"][1] == "2025-05-31T12:00:00Z"


def test_unknown_kind_prints_name_and_age() -> None:
    t = table("Widget", {"metadata": meta("w")})
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Age"]
    assert t["rows"][0]["cells"] == ["w", "5m"]
    assert row("Widget", {"metadata": {"name": "w"}})["Age"] == "<unknown>"


# --------------------------------------------------------------------------- custom resources

WAYPOINT = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "Gateway",
    "metadata": meta("waypoint", created=ago(hours=1)),
    "spec": {
        "gatewayClassName": "istio-waypoint",
        "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        "infrastructure": {"labels": {"b": "2", "a": "<1>"}},
    },
    "status": {
        "addresses": [{"type": "IPAddress", "value": "10.96.0.20"}],
        "conditions": [
            {"type": "Accepted", "status": "True"},
            {"type": "Programmed", "status": "False"},
        ],
        "ratio": 0.5,
        "enabled": True,
    },
}

GATEWAY_COLUMNS = [
    {"name": "Class", "type": "string", "jsonPath": ".spec.gatewayClassName"},
    {"name": "Address", "type": "string", "jsonPath": ".status.addresses[*].value"},
    {
        "name": "Programmed",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Programmed")].status',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def test_custom_resource_printer_columns() -> None:
    t = table("Gateway", WAYPOINT, printer_columns=GATEWAY_COLUMNS)
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name",
        "Class",
        "Address",
        "Programmed",
        "Age",
    ]
    assert t["columnDefinitions"][1]["description"] == (
        "Custom resource definition column (in JSONPath format): .spec.gatewayClassName"
    )
    assert t["rows"][0]["cells"] == ["waypoint", "istio-waypoint", "10.96.0.20", "False", "60m"]


def test_custom_resource_without_columns_gets_age_only() -> None:
    t = table("Gateway", WAYPOINT, printer_columns=[])
    assert [(c["name"], c["type"]) for c in t["columnDefinitions"]] == [
        ("Name", "string"),
        ("Age", "date"),
    ]
    assert t["rows"][0]["cells"] == ["waypoint", "60m"]


def test_custom_columns_without_age_get_no_age() -> None:
    columns = [{"name": "Class", "type": "string", "jsonPath": ".spec.gatewayClassName"}]
    t = table("Gateway", WAYPOINT, printer_columns=columns)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Class"]


@pytest.mark.parametrize(
    ("column", "cell"),
    [
        ({"type": "string", "jsonPath": ".spec.missing"}, None),
        (
            {"type": "string", "jsonPath": ".spec.listeners"},
            '[{"name":"mesh","port":15008,"protocol":"HBONE"}]',
        ),
        (
            {"type": "string", "jsonPath": ".spec.infrastructure.labels"},
            '{"a":"\\u003c1\\u003e","b":"2"}',
        ),
        ({"type": "string", "jsonPath": ".spec.listeners[0].port"}, "15008"),
        ({"type": "string", "jsonPath": ".status.enabled"}, "true"),
        ({"type": "string", "jsonPath": ".status.ratio"}, "0.5"),
        ({"type": "integer", "jsonPath": ".spec.listeners[0].port"}, 15008),
        ({"type": "integer", "jsonPath": ".spec.listeners[-1].port"}, 15008),
        ({"type": "integer", "jsonPath": ".status.ratio"}, 0),
        ({"type": "integer", "jsonPath": ".spec.gatewayClassName"}, None),
        ({"type": "number", "jsonPath": ".spec.listeners[0].port"}, 15008.0),
        ({"type": "boolean", "jsonPath": ".status.enabled"}, True),
        ({"type": "boolean", "jsonPath": ".spec.gatewayClassName"}, None),
        ({"type": "date", "jsonPath": ".spec.gatewayClassName"}, "<invalid>"),
        (
            {"type": "string", "jsonPath": ".status.conditions[?(@.status=='True')].type"},
            "Accepted",
        ),
        (
            {"type": "string", "jsonPath": ".status.conditions[?(@.type!='Accepted')].type"},
            "Programmed",
        ),
        ({"type": "string", "jsonPath": ".status.conditions[1:].type"}, "Programmed"),
        ({"type": "string", "jsonPath": ".status.conditions[?(@.reason)].type"}, None),
        ({"type": "string", "jsonPath": ".spec['gatewayClassName']"}, "istio-waypoint"),
        ({"type": "string", "jsonPath": "..protocol"}, "HBONE"),
        ({"type": "string", "jsonPath": ".spec[broken"}, None),
        ({"type": "unknown", "jsonPath": ".spec.gatewayClassName"}, None),
    ],
)
def test_custom_column_cells(column: dict[str, Any], cell: Any) -> None:
    t = table("Gateway", WAYPOINT, printer_columns=[{"name": "C", **column}])
    assert t["rows"][0]["cells"][1] == cell


def test_escaped_dots_in_jsonpath_keys() -> None:
    obj = {"metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "bookinfo"}}}
    columns = [
        {"name": "App", "type": "string", "jsonPath": r".metadata.labels.app\.kubernetes\.io/name"}
    ]
    assert table("Thing", obj, printer_columns=columns)["rows"][0]["cells"] == ["x", "bookinfo"]


def test_custom_column_priority_and_format_pass_through() -> None:
    columns = [
        {
            "name": "Hosts",
            "type": "string",
            "format": "hostname",
            "priority": 1,
            "description": "The hosts",
            "jsonPath": ".spec.hosts",
        }
    ]
    col = table("VirtualService", {"metadata": meta()}, printer_columns=columns)[
        "columnDefinitions"
    ][1]
    assert col == {
        "name": "Hosts",
        "type": "string",
        "format": "hostname",
        "description": "The hosts",
        "priority": 1,
    }
