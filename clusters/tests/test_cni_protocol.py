"""The node agent's CNI runtime without a cluster: which configuration it picks, what
a plugin gets on stdin and in its environment, the primary result, errors, and a
chain of real plugin processes through ADD and DEL with the cached result.

Expectations cite the CNI spec 1.0 (containernetworking/cni SPEC.md @ spec-v1.0.0),
libcni (libcni/api.go, libcni/conf.go, pkg/invoke/raw_exec.go) and containerd
(internal/cri/server/sandbox_run.go)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from clusters.local.node import cni

from . import cni_recorder

PRIMARY = cni.PrimaryNetwork(host_link="v0123456789ab", host_mac="0e:58:c6:12:00:05",
                             mac="0a:58:c6:12:00:05", sandbox="/var/run/netns/pod-u",
                             ip="198.18.0.5", gateway="198.18.0.1",
                             dns={"nameservers": ["198.19.0.10"], "search": ["a.svc"],
                                  "options": ["ndots:5"]})
SANDBOX_ID = "a" * 64


def _list(name: str, *plugins: dict) -> str:
    return json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": list(plugins)})


def test_first_valid_file_in_lexical_order_is_the_network():
    files = {
        "05-broken.conflist": "{not json",                       # skipped: invalid
        "07-noplugins.conflist": _list("empty"),                 # skipped: no plugins
        "10-ambient-harness.conflist": _list("first", {"type": "a"}),
        "20-other.conflist": _list("second", {"type": "b"}),
        "00-notes.txt": _list("ignored", {"type": "c"}),         # not a config extension
    }
    network = cni.select_network(files)
    assert network is not None and network.name == "first"
    assert [p["type"] for p in network.plugins] == ["a"]


def test_a_single_plugin_conf_becomes_a_one_plugin_list():
    conf = {"cniVersion": "0.3.1", "name": "bridge-net", "type": "bridge", "bridge": "cni0"}
    network = cni.select_network({"10-bridge.conf": json.dumps(conf)})
    assert network is not None
    assert (network.name, network.cni_version) == ("bridge-net", "0.3.1")
    assert network.plugins == (conf,)


def test_no_configuration_is_no_network():
    assert cni.select_network({}) is None
    assert cni.select_network({"10-x.conflist.disabled": _list("x", {"type": "a"})}) is None


def test_request_config_injects_name_version_runtime_config_and_prev_result():
    network = cni.NetworkConfigList("net", "1.0.0", ({"type": "p"},), "x")
    plugin = {"type": "p", "name": "mine", "custom": [1, 2],
              "capabilities": {"dns": True, "portMappings": True, "bandwidth": False}}
    caps = {"dns": {"servers": ["198.19.0.10"]}, "bandwidth": {"ingressRate": 1},
            "io.kubernetes.cri.pod-annotations": {"a": "b"}}
    prev = {"cniVersion": "1.0.0", "ips": []}
    conf = cni.request_config(network, plugin, prev, caps)
    assert conf == {"type": "p", "name": "net", "custom": [1, 2], "cniVersion": "1.0.0",
                    "runtimeConfig": {"dns": {"servers": ["198.19.0.10"]}},
                    "prevResult": prev}
    assert "prevResult" not in cni.request_config(network, plugin, None, caps)
    assert "runtimeConfig" not in cni.request_config(network, {"type": "p"}, None, caps)


def test_primary_result_in_the_lists_version():
    v1 = PRIMARY.result("1.0.0")
    assert v1["interfaces"][1] == {"name": "eth0", "mac": "0a:58:c6:12:00:05",
                                   "sandbox": "/var/run/netns/pod-u"}
    assert v1["ips"] == [{"address": "198.18.0.5/32", "gateway": "198.18.0.1",
                          "interface": 1}]
    assert v1["routes"] == [{"dst": "0.0.0.0/0", "gw": "198.18.0.1"}]
    assert v1["dns"]["nameservers"] == ["198.19.0.10"]
    assert PRIMARY.result("0.3.1")["ips"][0]["version"] == "4"
    with pytest.raises(cni.CniError) as err:
        PRIMARY.result("0.2.0")
    assert err.value.code == 1


def test_plugin_errors_read_as_libcni_reads_them():
    err = cni.plugin_error(b'{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration",'
                           b'"details":"too small"}', b"", "exit status 1")
    assert (str(err), err.code) == ("Invalid Configuration; too small", 7)
    assert str(cni.plugin_error(b"", b"boom\n", "exit status 2")) == \
        "netplugin failed: 'boom\\n': exit status 2"
    assert str(cni.plugin_error(b"", b"", "exit status 3")) == \
        "netplugin failed with no error message: exit status 3"
    assert "error parsing its diagnostic message" in str(
        cni.plugin_error(b"not json", b"", "exit status 1"))


def test_cni_args_and_capabilities_as_containerd_sends_them():
    pod = {"metadata": {"name": "web", "namespace": "ns", "uid": "u-1",
                        "annotations": {"k": "v"}},
           "spec": {"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080},
                                              {"containerPort": 81}]}]}}
    args = cni.k8s_args("ns", "web", SANDBOX_ID, "u-1")
    env = cni.Attachment(SANDBOX_ID, "/var/run/netns/pod-u-1", args, {}).env("ADD", "/bin")
    assert env["CNI_ARGS"] == (f"IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;"
                               f"K8S_POD_INFRA_CONTAINER_ID={SANDBOX_ID};K8S_POD_UID=u-1")
    assert (env["CNI_IFNAME"], env["CNI_PATH"], env["CNI_COMMAND"]) == ("eth0", "/bin", "ADD")
    caps = cni.capability_args(pod, {"nameservers": ["d"], "search": ["s"], "options": []},
                               "/x/pod1")
    assert caps == {"io.kubernetes.cri.pod-annotations": {"k": "v"},
                    "portMappings": [{"hostPort": 8080, "containerPort": 80,
                                      "protocol": "tcp", "hostIP": ""}],
                    "dns": {"servers": ["d"], "searches": ["s"], "options": []},
                    "cgroupPath": "/x/pod1"}


def _runtime(tmp_path: Path, *plugins: dict) -> tuple[cni.Runtime, Path]:
    runtime = cni.Runtime(cni.NodePaths(tmp_path / "host"))
    conflist = runtime.install_primary("198.18.0.0/24")
    data = json.loads(conflist.read_text())
    assert data["plugins"] == [{"type": cni.PRIMARY_TYPE, "podCIDR": "198.18.0.0/24"}]
    data["plugins"] += plugins
    conflist.write_text(json.dumps(data))
    for p in plugins:
        cni_recorder.install(runtime.bin_dir, p["type"])
    records = tmp_path / "records"
    records.mkdir()
    return runtime, records


def _attachment() -> cni.Attachment:
    return cni.Attachment(SANDBOX_ID, "/var/run/netns/pod-nonexistent",
                          cni.k8s_args("ns", "web", SANDBOX_ID, "u-1"), {})


def test_chain_add_then_delete_in_reverse_with_the_cached_result(tmp_path):
    rec = str(tmp_path / "records")
    runtime, records = _runtime(tmp_path, {"type": "rec-a", "recordDir": rec},
                                {"type": "rec-b", "name": "b", "recordDir": rec})
    network = runtime.load()
    assert network is not None and network.name == cni.PRIMARY_NETWORK
    cache = tmp_path / "cache"
    result = asyncio.run(runtime.add(network, _attachment(), PRIMARY, cache))
    assert result == PRIMARY.result("1.0.0")  # passed through both chained plugins
    a, b = cni_recorder.records(records)
    assert [(r["command"], r["type"]) for r in (a, b)] == [("ADD", "rec-a"), ("ADD", "rec-b")]
    assert a["stdin"]["prevResult"] == PRIMARY.result("1.0.0")
    assert b["stdin"]["prevResult"] == a["output"]
    assert a["env"]["CNI_PATH"] == str(runtime.bin_dir)
    [cached] = list(cache.iterdir())
    assert cached.name == f"{cni.PRIMARY_NETWORK}-{SANDBOX_ID}-eth0"
    # The configuration changes after the ADD: DEL still runs the list the ADD ran.
    (runtime.net_dir / cni.PRIMARY_CONFLIST).write_text(_list("changed", {"type": "rec-c"}))
    asyncio.run(runtime.delete(_attachment(), cache))
    dels = cni_recorder.records(records)[2:]
    assert [(r["command"], r["type"]) for r in dels] == [("DEL", "rec-b"), ("DEL", "rec-a")]
    assert all(r["stdin"]["prevResult"] == result for r in dels)
    assert list(cache.iterdir()) == []


def test_failing_plugin_stops_the_chain_with_its_message(tmp_path):
    rec = str(tmp_path / "records")
    runtime, records = _runtime(tmp_path, {"type": "rec-a", "recordDir": rec, "failAdds": 1},
                                {"type": "rec-b", "recordDir": rec})
    network = runtime.load()
    assert network is not None
    with pytest.raises(cni.CniError) as err:
        asyncio.run(runtime.add(network, _attachment(), PRIMARY, tmp_path / "cache"))
    assert str(err.value) == ('plugin type="rec-a" failed (add): test plugin refuses; '
                              "attempt 1")
    assert err.value.code == cni_recorder.ERROR_CODE
    assert [r["type"] for r in cni_recorder.records(records)] == ["rec-a"]  # b never ran
    assert not (tmp_path / "cache").exists()  # nothing cached after a failed ADD
    # The DEL after a failed ADD: the same list, reversed, without a result.
    asyncio.run(runtime.delete(_attachment(), tmp_path / "cache", network))
    dels = [r for r in cni_recorder.records(records) if r["command"] == "DEL"]
    assert [r["type"] for r in dels] == ["rec-b", "rec-a"]
    assert all("prevResult" not in r["stdin"] for r in dels)


def test_a_plugin_missing_from_the_bin_folder_is_named(tmp_path):
    runtime, _ = _runtime(tmp_path)
    network = cni.NetworkConfigList("n", "1.0.0", ({"type": "nowhere"},), "x")
    with pytest.raises(cni.CniError, match=r'type="nowhere" failed \(add\): failed to find '
                       r'plugin "nowhere" in path'):
        asyncio.run(runtime.add(network, _attachment(), PRIMARY, tmp_path / "cache"))


def test_install_primary_keeps_an_existing_list(tmp_path):
    runtime, _ = _runtime(tmp_path, {"type": "chained-by-an-installer", "recordDir": "/x"})
    runtime.install_primary("198.18.0.0/24")
    network = runtime.load()
    assert network is not None
    assert [p["type"] for p in network.plugins] == [cni.PRIMARY_TYPE,
                                                    "chained-by-an-installer"]
