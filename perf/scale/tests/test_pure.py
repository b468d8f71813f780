"""The benchmark's pure parts: percentiles, population layout, probe verdicts, the report
table.  No cluster, no root.  (Reading its processes is tested with perf.process_usage.)"""

from __future__ import annotations

import asyncio
import io
import json

import pytest

from perf.scale import population as pop
from perf.scale.probe import (
    all_acked,
    classify,
    covers,
    newer,
    parse_version,
    probe_once,
    serve_data,
)
from perf.scale.report import table
from perf.scale.runner import Config, goal_verdict, policy
from perf.scale.stats import percentile, summarize

# -- stats --------------------------------------------------------------------------------------


def test_percentile_is_nearest_rank():
    samples = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == 50
    assert percentile(samples, 99) == 99
    assert percentile(samples, 100) == 100
    assert percentile(list(reversed(samples)), 1) == 1


def test_p99_of_twenty_samples_is_the_worst():
    samples = [0.1] * 19 + [0.9]
    assert percentile(samples, 99) == 0.9
    assert percentile(samples, 50) == 0.1


def test_percentile_rejects_nonsense():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_summarize_counts_misses_rather_than_hiding_them():
    out = summarize([0.02, None, 0.04, 0.03])
    assert out["n"] == 4 and out["missed"] == 1
    assert out["p50_s"] == 0.03 and out["p99_s"] == 0.04 and out["max_s"] == 0.04
    assert summarize([None])["p99_s"] is None


# -- population ---------------------------------------------------------------------------------


def test_layout_groups_pods_into_services_and_namespaces():
    layout = pop.Layout(pods_per_service=10, pods_per_namespace=100)
    assert layout.namespace_of(0) == "scale-000" and layout.namespace_of(199) == "scale-001"
    assert layout.service_of(9) == "svc-0000" and layout.service_of(10) == "svc-0001"
    assert layout.counts(1000) == {"pods": 1000, "services": 100, "namespaces": 10}
    assert layout.counts(105) == {"pods": 105, "services": 11, "namespaces": 2}
    with pytest.raises(ValueError):
        pop.Layout(pods_per_service=30, pods_per_namespace=100)


def test_fake_addresses_are_unique_and_away_from_real_nodes():
    ips = [pop.fake_ip(i) for i in range(5000)]
    assert len(set(ips)) == 5000
    assert all(ip.startswith("198.18.") and int(ip.split(".")[2]) >= 128 for ip in ips)
    assert not any(ip.endswith((".0", ".255")) for ip in ips)
    with pytest.raises(ValueError):
        pop.fake_ip(10**6)


def test_fake_pod_is_bound_to_a_node_without_agent_and_matches_its_service():
    layout = pop.Layout()
    manifest = pop.pod_manifest(layout, 42)
    service = pop.service_manifest(layout, 42)
    assert manifest["spec"]["nodeName"].startswith(pop.FAKE_NODE_PREFIX)
    assert manifest["metadata"]["namespace"] == service["metadata"]["namespace"]
    labels = manifest["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    # The Service names the container port, so the control plane resolves it per pod.
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert manifest["spec"]["containers"][0]["ports"][0]["name"] == "http"


def test_running_status_is_what_a_kubelet_reports_for_a_ready_pod():
    status = pop.running_status(pop.Layout(), 7, now="2026-01-01T00:00:00Z")["status"]
    assert status["phase"] == "Running"
    assert status["podIP"] == pop.fake_ip(7) == status["podIPs"][0]["ip"]
    assert {"type": "Ready", "status": "True",
            "lastTransitionTime": "2026-01-01T00:00:00Z"} in status["conditions"]


def test_namespaces_carry_the_implementations_enrollment_labels():
    assert pop.namespace_manifest("a")["metadata"]["labels"][
        "istio.io/dataplane-mode"] == "ambient"
    custom = pop.namespace_manifest("a", {"mesh": "on"})["metadata"]["labels"]
    assert custom["mesh"] == "on" and "istio.io/dataplane-mode" not in custom


# -- probe verdicts -----------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "error", "state"), [
    (b"HTTP/1.1 200 OK\r\n", None, "allowed"),
    (b"HTTP/1.0 204 No Content\r\n", None, "allowed"),
    (b"HTTP/1.1 503 Service Unavailable\r\n", None, "http-503"),
    (b"", None, "denied"),
    (None, ConnectionResetError(), "denied"),
    (None, ConnectionRefusedError(), "refused"),
    (None, TimeoutError(), "timeout"),
    (b"SSH-2.0-x\r\n", None, "garbage"),
])
def test_classify(line, error, state):
    assert classify(line, error) == state


def test_versions_order_within_an_epoch_and_a_new_epoch_is_newer():
    assert parse_version("ab12.7") == ("ab12", 7)
    assert parse_version("opaque") is None
    assert newer("ab12.8", "ab12.7") and not newer("ab12.7", "ab12.7")
    assert not newer("ab12.6", "ab12.7")
    assert newer("cd34.1", "ab12.7")
    assert covers("ab12.9", "ab12.8") and not covers("ab12.7", "ab12.8")
    assert not covers("cd34.9", "ab12.8") and not covers(None, "ab12.8")


def test_all_acked_needs_every_expected_client():
    doc = {"version": "e.5", "clients": [{"acked": "e.5"}, {"acked": "e.4"}]}
    assert not all_acked(doc, "e.5", 2)
    assert all_acked(doc, "e.4", 2)
    assert not all_acked({"clients": [{"acked": "e.5"}]}, "e.5", 2)


def _serve(answer: bytes | None):
    """A loopback server answering every connection with ``answer`` (None: close)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()
    return asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(("answer", "state"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "allowed"),
    (None, "denied"),
])
def test_probe_once_against_a_loopback_server(answer, state):
    async def main() -> tuple[str, float, float]:
        server = await _serve(answer)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await probe_once("127.0.0.1", port, 2.0)

    got, start, end = asyncio.run(main())
    assert got == state and start <= end


def test_data_observer_refuses_to_arm_when_the_state_is_already_the_wanted_one():
    """A watch for "denied" while everything is still denied would time a change that
    happened before it; the observer says so instead of arming."""
    async def main() -> str:
        server = await _serve(None)  # every connection closed: "denied"
        port = server.sockets[0].getsockname()[1]
        out = io.StringIO()
        cmds = io.StringIO(json.dumps({"cmd": "watch", "want": "denied", "timeout": 1}) + "\n")
        async with server:
            await asyncio.to_thread(serve_data, [("127.0.0.1", port)], 0.01, 1.0, out, cmds)
        return out.getvalue()

    reply = json.loads(asyncio.run(main()).splitlines()[0])
    assert reply["armed"] is False and list(reply["states"].values()) == ["denied"]


# -- the run's pure decisions ---------------------------------------------------------------------


def test_policy_names_the_client_and_selects_the_servers():
    doc = policy("ALLOW")
    assert doc["spec"]["action"] == "ALLOW"
    assert doc["spec"]["selector"]["matchLabels"] == {"app": "scale-server"}
    assert doc["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        "cluster.local/ns/scale-probe/sa/scale-client"]


def test_config_sorts_sizes_and_refuses_empty_runs():
    assert Config(sizes=[1000, 100, 500, 100]).sizes == [100, 500, 1000]
    with pytest.raises(ValueError):
        Config(sizes=[])
    with pytest.raises(ValueError):
        Config(changes=0)


def _size(pods: int, p99: float | None, rss: int, missed: int = 0) -> dict:
    summary = {"n": 20, "missed": missed, "p50_s": p99, "p99_s": p99}
    return {"pods": pods, "services": pods // 10,
            "propagation": {"data_path": summary, "syncz_ack": summary,
                            "syncz_version": summary},
            "memory": {"after_changes": {"istiod": {"rss_bytes": rss}}},
            "istiod_rss_mib": rss / 2**20, "istiod_hwm_mib": rss / 2**20,
            "ztunnel_rss_mib": {"node-1": 60.0}, "istiod_cpu_seconds_during_changes": 1.5}


def test_goal_verdict_at_a_thousand_pods():
    assert goal_verdict([_size(100, 0.1, 10**8)]) is None
    assert goal_verdict([_size(1000, 0.9, 10**8)]) == {"propagation": True,
                                                       "istiod_memory": True}
    assert goal_verdict([_size(1000, 1.2, 3 * 10**8)]) == {"propagation": False,
                                                           "istiod_memory": False}
    assert goal_verdict([_size(1000, 0.5, 10**8, missed=1)])["propagation"] is False


def test_table_has_a_row_per_size_and_the_verdict():
    report = {"sizes": [_size(100, 0.05, 10**8), _size(1000, 0.5, 10**8)],
              "goal": {"at_pods": 1000, "propagation_p99_s": 1.0, "istiod_rss_bytes": 2e8},
              "goal_met": {"propagation": True, "istiod_memory": True}}
    text = table(report)
    lines = text.splitlines()
    assert lines[0].split()[0] == "pods"
    assert lines[2].split()[0] == "100" and lines[3].split()[0] == "1000"
    assert "500 ms" in lines[3]
    assert "propagation p99 <= 1.0 s: met" in text
