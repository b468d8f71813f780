"""The service proxy's ruleset, from objects to nftables text (no kernel involved)."""

from __future__ import annotations

from clusters.local.network.proxy import render


def _svc(name, vip, ports, ns="default"):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": vip, "ports": ports}}


def _slice(svc, endpoints, ports, ns="default"):
    return {"metadata": {"name": f"{svc}-x", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}}
                          for ip, ready in endpoints],
            "ports": ports}


def test_ready_endpoints_are_chosen_at_random_and_not_ready_ones_never():
    rules = render(
        [_svc("web", "198.19.0.5", [{"name": "http", "port": 80, "protocol": "TCP"}])],
        [_slice("web", [("198.18.0.2", True), ("198.18.1.2", True), ("198.18.0.3", False)],
                [{"name": "http", "port": 9080, "protocol": "TCP"}])])
    assert "ip daddr 198.19.0.5 tcp dport 80 jump svc_" in rules
    assert "numgen random mod 2 vmap" in rules
    assert "dnat to 198.18.0.2:9080" in rules and "dnat to 198.18.1.2:9080" in rules
    assert "198.18.0.3" not in rules


def test_hairpin_is_masqueraded():
    rules = render([_svc("a", "198.19.0.6", [{"port": 80}])],
                   [_slice("a", [("198.18.0.2", True)], [{"name": "", "port": 80}])])
    assert "ip saddr 198.18.0.2 meta mark set meta mark | 0x4000" in rules
    assert "meta mark & 0x4000 == 0x4000 masquerade" in rules


def test_no_ready_endpoint_rejects_and_udp_is_kept_apart():
    rules = render(
        [_svc("dns", "198.19.0.10", [{"name": "dns", "port": 53, "protocol": "UDP"},
                                     {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])],
        [_slice("dns", [("198.18.0.9", True)], [{"name": "dns", "port": 53, "protocol": "UDP"}])])
    assert "ip daddr 198.19.0.10 udp dport 53 jump" in rules
    assert "meta l4proto udp dnat to 198.18.0.9:53" in rules
    assert "elements = { 198.19.0.10 . tcp . 53 }" in rules


def test_headless_and_external_name_services_get_no_rules():
    rules = render([_svc("h", "None", [{"port": 80}]),
                    {"metadata": {"name": "e", "namespace": "default"},
                     "spec": {"type": "ExternalName", "externalName": "x.example"}}], [])
    assert "dport" not in rules.split("chain services", 1)[1].split("}", 1)[0]


def test_rendering_is_deterministic():
    svcs = [_svc(f"s{i}", f"198.19.0.{i + 2}", [{"port": 80}]) for i in range(5)]
    slices = [_slice(f"s{i}", [("198.18.0.2", True)], [{"name": "", "port": 80}])
              for i in range(5)]
    assert render(svcs, slices) == render(list(reversed(svcs)), list(reversed(slices)))
