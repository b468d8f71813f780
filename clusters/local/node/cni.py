"""CNI as a container runtime drives it: the node agent runs the plugin chain of the
node's network configuration on pod sandbox add and delete.

What follows the CNI specification 1.0 (containernetworking/cni SPEC.md, tag
spec-v1.0.0) and, where it leaves room, libcni (libcni/api.go, libcni/conf.go,
pkg/invoke) and containerd's CRI plugin (internal/cri/server/sandbox_run.go):

- **Which network**: the lexicographically first ``*.conf``, ``*.conflist`` or
  ``*.json`` file of the node's ``/etc/cni/net.d`` that parses as a network
  configuration (go-cni loads the first valid one; a ``.conf`` holds a single
  plugin and becomes a one-plugin list).  No file: no plugin runs.
- **The primary network is the agent's own**: the routed veth of ``sandbox.py``.
  The agent writes ``10-ambient-harness.conflist`` at start (as kindnet writes its
  ``10-kindnet.conflist``) whose plugin has type ``ambient-harness-ptp``; the agent
  recognises that type and does not exec it: its result is the sandbox's
  interfaces, address, routes and DNS.  Installers such as istio-cni's append
  their plugin to that list (chained mode: istio/istio cni/pkg/install/cniconfig.go).
- **ADD** runs the plugins in order, each with the previous one's result as
  ``prevResult``; the final result is cached in the pod's folder (libcni caches it
  under /var/lib/cni/results).  A failing plugin stops the chain with its error.
- **DEL** runs the cached list (the configuration the ADD used: the spec says the
  configuration should not change between add and delete) in reverse order, each
  with the cached final ADD result as ``prevResult``; then the cache goes.  A
  failed ADD is followed by a DEL of the same list without a result, as the spec
  asks.  CHECK, GC, STATUS and VERSION are not called (containerd and kubelet do
  not call CHECK either).
- **Per invocation**: ``CNI_COMMAND``, ``CNI_CONTAINERID`` (the sandbox id),
  ``CNI_NETNS`` (``/var/run/netns/pod-<uid>``), ``CNI_IFNAME=eth0``, ``CNI_ARGS``
  (containerd's ``K8S_POD_*`` labels with ``IgnoreUnknown=1``), ``CNI_PATH``
  (``/opt/cni/bin``, the node's) over the agent's own environment, and on stdin the
  plugin's object with ``name`` and ``cniVersion`` of the list, ``runtimeConfig``
  holding the capability arguments the plugin asked for, ``prevResult``, and no
  ``capabilities``.
- **Where plugins run**: in the node's network namespace (the agent's own) and,
  given a launcher for it, in the node's view of host paths (``NodePaths``; the
  node agent's launcher starts each plugin in ``NodeRoot.view()``), since plugins
  such as istio-cni's use host paths written into the configuration (its kubeconfig,
  event socket and log under ``cni_agent_run_dir``, ``/var/run/istio-cni``: istio/istio
  cni/pkg/plugin/plugin.go, kubernetes.go) and open ``CNI_NETNS``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("node.cni")

PRIMARY_TYPE = "ambient-harness-ptp"
PRIMARY_CONFLIST = "10-ambient-harness.conflist"
PRIMARY_NETWORK = "ambient-harness"
PRIMARY_VERSION = "1.0.0"
NET_DIR = "/etc/cni/net.d"
# Where a plugin finds pod namespaces: /var/run links to /run, where `ip netns` keeps
# them; containerd passes /var/run/netns/cni-<id> the same way.
NETNS_DIR = "/var/run/netns"
BIN_DIR = "/opt/cni/bin"
IFNAME = "eth0"
# kubelet's default --runtime-request-timeout bounds the whole CRI call; one plugin
# taking longer than that has certainly hung.
PLUGIN_TIMEOUT = 120.0
CONFIG_EXTENSIONS = (".conf", ".conflist", ".json")
# Result formats the primary network can render: 0.3.x and 0.4.0 carry a "version"
# per IP, 1.x does not (SPEC.md, spec-v1.0.0: "removed version field").
_LEGACY_RESULT_VERSIONS = ("0.3.0", "0.3.1", "0.4.0")
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class PluginProcess(Protocol):
    """What the runtime uses of a started plugin (``asyncio.subprocess.Process`` and
    ``rootfs.Process`` both have it)."""

    @property
    def returncode(self) -> int | None: ...

    async def communicate(self, input: bytes | None = None) -> tuple[Any, Any]: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


Launcher = Callable[..., Awaitable[PluginProcess]]


async def launch_here(argv: Sequence[str], *, env: dict[str, str], stdin: int, stdout: int,
                      stderr: int) -> PluginProcess:
    """Start a plugin with this machine's filesystem (no node view)."""
    return await asyncio.create_subprocess_exec(*argv, env=env, stdin=stdin, stdout=stdout,
                                                stderr=stderr, cwd="/")


@dataclass(frozen=True)
class NodePaths:
    """The node's host paths: ``root`` is the folder that stands for the node's
    ``/`` (its ``etc/cni/net.d``, ``opt/cni/bin``, ...), as the agent reaches it.

    ``launch(argv, *, env, stdin, stdout, stderr)`` starts a plugin; ``in_view``
    says whether it starts it in the node's view (a mount layout in which the
    node's folders appear at their host paths), so plugins are told host paths
    (``/opt/cni/bin``); without one they are told the real folders.
    """

    root: Path
    launch: Launcher = launch_here
    in_view: bool = False

    def host(self, path: str) -> Path:
        """Where the agent finds the node's ``path``."""
        return self.root / path.lstrip("/")

    def seen(self, path: str) -> str:
        """The node's ``path`` as a plugin process sees it."""
        return path if self.in_view else str(self.host(path))


class CniError(Exception):
    """A plugin (or the chain around it) failed; ``str()`` is the message a runtime
    reports, e.g. ``plugin type="x" name="y" failed (add): <msg>``."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    source: str  # the file it came from, for messages
    raw: dict[str, Any] = field(compare=False, default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    """The per-attachment parameters of the CNI specification (containernetworking/cni
    SPEC.md, section 3)."""

    container_id: str
    netns: str
    args: tuple[tuple[str, str], ...]
    capability_args: dict[str, Any]
    ifname: str = IFNAME

    def env(self, command: str, cni_path: str) -> dict[str, str]:
        return {"CNI_COMMAND": command, "CNI_CONTAINERID": self.container_id,
                "CNI_NETNS": self.netns, "CNI_ARGS": ";".join(f"{k}={v}" for k, v in self.args),
                "CNI_IFNAME": self.ifname, "CNI_PATH": cni_path}


# -- configuration ------------------------------------------------------------------

def parse_network(text: str, source: str) -> NetworkConfigList:
    """A ``.conflist`` (or, if it has a ``type`` and no ``plugins``, a single-plugin
    ``.conf``) as libcni reads it; ValueError names what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: not a JSON object")
    version = data.get("cniVersion", "")
    if not isinstance(version, str):
        raise ValueError(f"{source}: cniVersion must be a string")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{source}: no network name")
    if "plugins" not in data and isinstance(data.get("type"), str):
        # libcni ConfListFromConf: the file is its own single plugin
        return NetworkConfigList(name, version, (data,), source, data)
    plugins = data.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise ValueError(f"{source}: no plugins in list")
    for i, p in enumerate(plugins):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise ValueError(f"{source}: plugin {i} has no type")
        if "/" in p["type"]:
            raise ValueError(f"{source}: plugin {i}: invalid plugin name {p['type']!r}")
    return NetworkConfigList(name, version, tuple(plugins), source, data)


def select_network(files: dict[str, str]) -> NetworkConfigList | None:
    """From the net.d folder's files (name -> text): the lexicographically first that
    is a valid network configuration; invalid ones are skipped with a warning, as
    go-cni's loader skips them."""
    for fname in sorted(files):
        if not fname.endswith(CONFIG_EXTENSIONS):
            continue
        try:
            return parse_network(files[fname], fname)
        except ValueError as exc:
            log.warning("skipping CNI config: %s", exc)
    return None


def request_config(network: NetworkConfigList, plugin: dict[str, Any],
                   prev_result: dict[str, Any] | None,
                   capability_args: dict[str, Any]) -> dict[str, Any]:
    """The execution configuration of the CNI specification (containernetworking/cni
    SPEC.md, section 3, "Deriving execution configuration"): the plugin's object,
    unknown fields kept, with the list's ``name`` and ``cniVersion``, ``runtimeConfig``
    from the capabilities the plugin declares and the runtime provides, ``prevResult``;
    ``capabilities`` removed."""
    conf = {k: v for k, v in plugin.items() if k != "capabilities"}
    conf["name"] = network.name
    conf["cniVersion"] = network.cni_version
    caps = plugin.get("capabilities") or {}
    runtime = {k: v for k, v in capability_args.items()
               if isinstance(caps, dict) and caps.get(k) is True}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def describe(plugin: dict[str, Any]) -> str:
    """libcni's pluginDescription: ``type="x"`` and the plugin's own ``name=`` if any."""
    out = f'type="{plugin.get("type", "")}"'
    if plugin.get("name"):
        out += f' name="{plugin["name"]}"'
    return out


def primary_conflist(pod_cidr: str) -> dict[str, Any]:
    return {"cniVersion": PRIMARY_VERSION, "name": PRIMARY_NETWORK,
            "plugins": [{"type": PRIMARY_TYPE, "podCIDR": pod_cidr}]}


# -- results ------------------------------------------------------------------------

@dataclass(frozen=True)
class PrimaryNetwork:
    """What the routed veth set up, to be rendered as the primary plugin's result."""

    host_link: str
    host_mac: str
    mac: str
    sandbox: str  # CNI_NETNS
    ip: str
    gateway: str
    dns: dict[str, list[str]] | None = None

    def result(self, version: str) -> dict[str, Any]:
        ip: dict[str, Any] = {"address": f"{self.ip}/32", "gateway": self.gateway,
                              "interface": 1}
        if version in _LEGACY_RESULT_VERSIONS:
            ip["version"] = "4"
        elif not version.startswith("1."):
            raise CniError(f"incompatible CNI version {version!r}: the primary network "
                           f"renders {', '.join(_LEGACY_RESULT_VERSIONS)} and 1.x results",
                           code=1)
        out: dict[str, Any] = {
            "cniVersion": version,
            "interfaces": [{"name": self.host_link, "mac": self.host_mac},
                           {"name": IFNAME, "mac": self.mac, "sandbox": self.sandbox}],
            "ips": [ip],
            "routes": [{"dst": "0.0.0.0/0", "gw": self.gateway}],
        }
        if self.dns:
            out["dns"] = self.dns
        return out


def plugin_error(stdout: bytes, stderr: bytes, status: str) -> CniError:
    """A failed plugin's error, as libcni's RawExec.pluginErr makes it: the error
    result on stdout (``msg; details``), else stderr, else the exit status."""
    if not stdout.strip():
        if stderr.strip():
            return CniError(f"netplugin failed: {stderr.decode(errors='replace')!r}: {status}")
        return CniError(f"netplugin failed with no error message: {status}")
    try:
        err = json.loads(stdout)
        if not isinstance(err, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return CniError("netplugin failed but error parsing its diagnostic message "
                        f"{stdout.decode(errors='replace')!r}: {exc}")
    msg = str(err.get("msg", ""))
    if err.get("details"):
        msg += f"; {err['details']}"
    code = err.get("code", 0)
    return CniError(msg, code=code if isinstance(code, int) else 0)


# -- the runtime --------------------------------------------------------------------

class Runtime:
    """Runs a node's CNI network for its pod sandboxes."""

    def __init__(self, paths: NodePaths) -> None:
        self.paths = paths

    @property
    def net_dir(self) -> Path:
        return self.paths.host(NET_DIR)

    @property
    def bin_dir(self) -> Path:
        return self.paths.host(BIN_DIR)

    def install_primary(self, pod_cidr: str) -> Path:
        """Write the agent's own conflist (atomically: installers watch the folder and
        must never read half a file); an existing one is kept, chained entries and all."""
        self.net_dir.mkdir(parents=True, exist_ok=True)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        path = self.net_dir / PRIMARY_CONFLIST
        if not path.exists():
            tmp = path.with_name(f".{PRIMARY_CONFLIST}.tmp")
            tmp.write_text(json.dumps(primary_conflist(pod_cidr), indent=2) + "\n")
            tmp.replace(path)
        return path

    def load(self) -> NetworkConfigList | None:
        """The network a sandbox made now gets (read afresh: installers change it)."""
        files = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.net_dir):
                if entry.is_file() and entry.name.endswith(CONFIG_EXTENSIONS):
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        files[entry.name] = Path(entry.path).read_text()
        return select_network(files)

    async def add(self, network: NetworkConfigList, attachment: Attachment,
                  primary: PrimaryNetwork, cache_dir: Path) -> dict[str, Any] | None:
        """Run the chain's ADD; cache and return the final result.  CniError on the
        first failure (the caller then runs ``delete`` with the same network)."""
        _check_container_id(attachment.container_id)
        result: dict[str, Any] | None = None
        for plugin in network.plugins:
            try:
                if plugin["type"] == PRIMARY_TYPE:
                    result = primary.result(network.cni_version)
                else:
                    result = await self._exec(network, plugin, "ADD", attachment, result)
            except CniError as exc:
                raise CniError(f"plugin {describe(plugin)} failed (add): {exc}",
                               exc.code) from None
        _write_cache(_cache_file(cache_dir, network.name, attachment), {
            "kind": "cniCacheV1", "containerId": attachment.container_id,
            "config": base64.b64encode(json.dumps(network.raw).encode()).decode(),
            "ifName": attachment.ifname, "networkName": network.name,
            "cniArgs": [list(a) for a in attachment.args],
            "capabilityArgs": attachment.capability_args, "result": result})
        return result

    async def delete(self, attachment: Attachment, cache_dir: Path,
                     fallback: NetworkConfigList | None = None) -> None:
        """Run the chain's DEL with the cached ADD (its configuration and result); with
        no cache (the ADD failed or was interrupted), with ``fallback`` and no result."""
        network, prev = _read_cache(cache_dir, attachment) or (fallback, None)
        if network is None:
            return
        for plugin in reversed(network.plugins):
            if plugin["type"] == PRIMARY_TYPE:
                continue  # the sandbox's own teardown removes the veth
            try:
                await self._exec(network, plugin, "DEL", attachment, prev)
            except CniError as exc:
                raise CniError(f"plugin {describe(plugin)} failed (delete): {exc}",
                               exc.code) from None
        with contextlib.suppress(FileNotFoundError):
            _cache_file(cache_dir, network.name, attachment).unlink()

    async def _exec(self, network: NetworkConfigList, plugin: dict[str, Any], command: str,
                    attachment: Attachment, prev: dict[str, Any] | None
                    ) -> dict[str, Any] | None:
        binary = self.bin_dir / plugin["type"]
        if not binary.is_file():
            raise CniError(f'failed to find plugin "{plugin["type"]}" in path '
                           f"[{self.paths.seen(BIN_DIR)}]")
        stdin = json.dumps(request_config(network, plugin, prev,
                                          attachment.capability_args)).encode()
        env = dict(os.environ)
        env.update(attachment.env(command, self.paths.seen(BIN_DIR)))
        argv = [f"{self.paths.seen(BIN_DIR)}/{plugin['type']}"]
        try:
            proc = await self.paths.launch(argv, env=env, stdin=asyncio.subprocess.PIPE,
                                           stdout=asyncio.subprocess.PIPE,
                                           stderr=asyncio.subprocess.PIPE)
        except Exception as exc:  # OSError, or the launcher's own (a view not made)
            raise CniError(f"{argv[0]}: {exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), PLUGIN_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CniError(f"no answer within {PLUGIN_TIMEOUT:g}s; killed") from None
        except BaseException:  # cancelled (the pod was deleted): no plugin outlives it
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            raise
        if err.strip():
            log.info("%s %s %s stderr: %s", plugin["type"], command, attachment.container_id,
                     err.decode(errors="replace").strip())
        if proc.returncode != 0:
            raise plugin_error(out, err, f"exit status {proc.returncode}")
        if command != "ADD":
            return None
        try:
            result = json.loads(out)
            if not isinstance(result, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise CniError(f"failed to parse the plugin's result {out[:200]!r}: {exc}") from None
        return result


def _check_container_id(cid: str) -> None:
    if not _CONTAINER_ID.fullmatch(cid):
        raise CniError(f"invalid container id {cid!r}", code=4)


def _cache_file(cache_dir: Path, network: str, attachment: Attachment) -> Path:
    return cache_dir / f"{network}-{attachment.container_id}-{attachment.ifname}"


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _read_cache(cache_dir: Path, attachment: Attachment
                ) -> tuple[NetworkConfigList, dict[str, Any] | None] | None:
    suffix = f"-{attachment.container_id}-{attachment.ifname}"
    for path in sorted(cache_dir.glob(f"*{suffix}")):
        try:
            data = json.loads(path.read_text())
            raw = base64.b64decode(data["config"]).decode()
            return parse_network(raw, str(path)), data.get("result")
        except (OSError, ValueError, KeyError) as exc:
            log.warning("unreadable CNI cache %s: %s", path, exc)
    return None


def k8s_args(namespace: str, name: str, sandbox_id: str, uid: str
             ) -> tuple[tuple[str, str], ...]:
    """The CNI_ARGS containerd sends (toCNILabels in internal/cri/server/sandbox_run.go),
    in the order libcni would print a list."""
    return (("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", namespace), ("K8S_POD_NAME", name),
            ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id), ("K8S_POD_UID", uid))


def capability_args(pod: dict[str, Any], dns: dict[str, list[str]] | None,
                    cgroup_path: str | None) -> dict[str, Any]:
    """The capability arguments containerd offers (cniNamespaceOpts): the pod's
    annotations always, host port mappings and DNS when there are any, and the pod's
    cgroup parent.  A plugin gets those it declares in ``capabilities``."""
    meta = pod.get("metadata") or {}
    out: dict[str, Any] = {
        "io.kubernetes.cri.pod-annotations": dict(meta.get("annotations") or {})}
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or ():
        for p in c.get("ports") or ():
            if p.get("hostPort"):
                ports.append({"hostPort": p["hostPort"], "containerPort": p["containerPort"],
                              "protocol": str(p.get("protocol", "TCP")).lower(),
                              "hostIP": p.get("hostIP", "")})
    if ports:
        out["portMappings"] = ports
    if dns:
        out["dns"] = {"servers": dns.get("nameservers", []),
                      "searches": dns.get("search", []), "options": dns.get("options", [])}
    if cgroup_path:
        out["cgroupPath"] = cgroup_path
    return out

