"""A mesh adapter described by a YAML file, so a third party plugs in with no Python.

The schema, every field with its default and the error messages are documented for
implementers in docs/declarative-adapter.md; the worked example is
conformance/adapters/examples/reference-declarative.yaml (the reference
implementation, proven by conformance/tests/test_declarative_example.py).  In short,
only ``name`` is required and relative paths resolve against the YAML file's folder::

    name: acme-mesh                     # required
    version: "1.4.2"                    # or version_command: [acme, version]
    install:
      manifests: [crds.yaml, install.yaml]   # applied in order
      commands: [[acmectl, install, -y]]     # run after the manifests
      wait_namespaces: [acme-system]         # then every workload there rolled out, pods Ready
    uninstall:                               # default: delete install.manifests in reverse
      commands: [[acmectl, uninstall, -y]]   # run first, then the manifests are deleted
      manifests: [install.yaml, crds.yaml]
    enroll:
      label: {istio.io/dataplane-mode: ambient}   # the default
    waypoint:
      flavours: [istio-waypoint]         # or a list of recipes, one per flavour group
      manifest: |                        # and/or commands: [[acmectl, waypoint, "{name}"]]
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: "{name}", namespace: "{namespace}"}
        spec: {gatewayClassName: istio-waypoint}
      deployment: "{name}"               # where the proxy runs (default "{name}")
      ready: {condition: Programmed}     # waited for on each Gateway in the manifest; null: none
    metrics: {ztunnel: 15020/stats/prometheus, waypoint: 15020/stats/prometheus}
    root_namespace: istio-system         # meshConfig.rootNamespace (the default)
    features: [capture, mtls, l4-policy]
    components:                          # for the resilience tests; Istio's names by default
      namespace: istio-system
      control_plane: istiod              # a Deployment
      node_proxy: app=ztunnel            # label selectors of pods
      cni_agent: k8s-app=istio-cni-node  # null: there is none
    certificate_authority:               # for ca-identity-binding: where workloads get certificates
      url: https://istiod.istio-system.svc:15012/v1/certificate
      protocol: json-https               # the only one the suite speaks
      audience: null                     # the token audience the CA requires, if any

Placeholders are replaced as text: ``{name}``, ``{namespace}``, ``{service_account}``
and ``{for}`` in the waypoint manifest, deployment and commands; ``{kubeconfig}`` in
install, uninstall and waypoint commands.  Commands run without a shell, in the YAML
file's folder, with ``KUBECONFIG`` set to the cluster's (not ``version_command``).
Bad input raises :class:`AdapterConfigError` naming the file and the field, never a
traceback; a failing command or waypoint raises :class:`AdapterError` saying which.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clusters.provider import ClusterError, ClusterProvider
from profiles.features import ALL_FEATURES, CA_IDENTITY_BINDING

from ..rollout import wait_rolled_out
from ..waiting import NotConverged
from .base import (
    ALL_FLAVOURS,
    AMBIENT_LABEL,
    CA_PROTOCOLS,
    DEFAULT_METRICS,
    FLAVOUR_TODAY,
    ROOT_NAMESPACE,
    AdapterConfigError,
    AdapterError,
    CertificateAuthority,
    Flavour,
    MeshAdapter,
    MeshComponents,
    WaypointInfo,
    gateway_condition,
)

COMPONENT_FIELDS = ("namespace", "control_plane", "node_proxy", "cni_agent")

TOP_LEVEL = frozenset(
    {
        "name",
        "version",
        "version_command",
        "install",
        "uninstall",
        "enroll",
        "waypoint",
        "metrics",
        "root_namespace",
        "features",
        "components",
        "certificate_authority",
    }
)


@dataclass(frozen=True)
class Steps:
    """Manifests to apply (or delete) and commands to run, in that order."""

    manifests: tuple[Path, ...] = ()
    commands: tuple[tuple[str, ...], ...] = ()
    wait_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class WaypointRecipe:
    flavours: frozenset[str]
    manifest: str | None = None
    commands: tuple[tuple[str, ...], ...] = ()
    deployment: str = "{name}"
    ready_condition: str | None = "Programmed"


@dataclass(frozen=True)
class DeclarativeConfig:
    """The validated content of an adapter file."""

    name: str
    source: Path
    version: str | None = None
    version_command: tuple[str, ...] = ()
    install: Steps = field(default_factory=Steps)
    uninstall: Steps | None = None
    enroll_label: Mapping[str, str] = field(default_factory=lambda: dict(AMBIENT_LABEL))
    # one recipe per flavour group; a flavour is served by at most one of them
    waypoints: tuple[WaypointRecipe, ...] = ()
    metrics: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_METRICS))
    features: frozenset[str] = frozenset()
    root_namespace: str = ROOT_NAMESPACE
    components: MeshComponents = field(default_factory=MeshComponents)
    certificate_authority: CertificateAuthority | None = None


# -- validation ---------------------------------------------------------------------------


class _Checker:
    """Type checks that name the file and the dotted field at fault."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> AdapterConfigError:
        return AdapterConfigError(f"{self.source}: field `{where}`: {message}")

    def typed(self, value: Any, kind: type | tuple[type, ...], where: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self.fail(where, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def string(self, value: Any, where: str, *, numbers: bool = False) -> str:
        if numbers and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `version: 1.2` is a number in YAML; accept it as text
        text = self.typed(value, str, where)
        if not text.strip():
            raise self.fail(where, "must not be empty")
        return text

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        items = self.typed(value, list, where)
        return tuple(self.string(v, f"{where}[{i}]") for i, v in enumerate(items))

    def argv_list(self, value: Any, where: str) -> tuple[tuple[str, ...], ...]:
        items = self.typed(value, list, where)
        out = []
        for i, argv in enumerate(items):
            parts = self.strings(argv, f"{where}[{i}]")
            if not parts:
                raise self.fail(f"{where}[{i}]", "a command needs at least a program")
            out.append(parts)
        return tuple(out)

    def mapping(self, value: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
        data = self.typed(value, dict, where)
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}" if where else unknown[0],
                f"unknown field; known: {', '.join(sorted(allowed))}",
            )
        return data

    def str_map(self, value: Any, where: str) -> dict[str, str]:
        data = self.typed(value, dict, where)
        return {self.string(k, where): self.string(v, f"{where}.{k}") for k, v in data.items()}

    def steps(self, value: Any, where: str) -> Steps:
        data = self.mapping(value, where, frozenset({"manifests", "commands", "wait_namespaces"}))
        manifests = tuple(
            self._path(p, f"{where}.manifests[{i}]")
            for i, p in enumerate(self.strings(data.get("manifests", []), f"{where}.manifests"))
        )
        return Steps(
            manifests,
            self.argv_list(data.get("commands", []), f"{where}.commands"),
            self.strings(data.get("wait_namespaces", []), f"{where}.wait_namespaces"),
        )

    def _path(self, text: str, where: str) -> Path:
        if "://" in text:
            raise self.fail(where, "URLs are not accepted: vendor the manifest next to the file")
        path = Path(text)
        return path if path.is_absolute() else self.source.parent / path


def parse_config(data: Any, source: Path) -> DeclarativeConfig:
    """Validate a loaded YAML document into a :class:`DeclarativeConfig`."""
    c = _Checker(source)
    if not isinstance(data, dict):
        raise AdapterConfigError(
            f"{source}: the file must be a YAML mapping with at least `name`, "
            f"got {type(data).__name__}"
        )
    top = c.mapping(data, "", TOP_LEVEL)
    if "name" not in top:
        raise c.fail("name", "required: the implementation's name for the report")
    name = c.string(top["name"], "name")
    version = c.string(top["version"], "version", numbers=True) if "version" in top else None
    version_command = (
        c.strings(top["version_command"], "version_command") if "version_command" in top else ()
    )
    install = c.steps(top.get("install", {}), "install")
    uninstall = c.steps(top["uninstall"], "uninstall") if "uninstall" in top else None

    enroll = c.mapping(top.get("enroll", {}), "enroll", frozenset({"label"}))
    enroll_label = c.str_map(enroll.get("label", dict(AMBIENT_LABEL)), "enroll.label")
    if not enroll_label:
        raise c.fail("enroll.label", "must name at least one label")

    waypoints: list[WaypointRecipe] = []
    if "waypoint" in top:
        # one recipe, or a list of them when flavours need different objects (the 2022
        # Gateway differs in apiVersion, class, annotation and Deployment name)
        given = top["waypoint"]
        many = isinstance(given, list)
        for i, item in enumerate(given if many else [given]):
            recipe = _waypoint_recipe(c, item, f"waypoint[{i}]" if many else "waypoint")
            taken = set().union(*(r.flavours for r in waypoints))
            for f in sorted(recipe.flavours & taken):
                raise c.fail(f"waypoint[{i}].flavours", f"flavour {f!r} has a recipe already")
            waypoints.append(recipe)
        if many and not waypoints:
            raise c.fail("waypoint", "an empty list: give a recipe or leave `waypoint` out")

    metrics = {**DEFAULT_METRICS, **c.str_map(top.get("metrics", {}), "metrics")}
    root_namespace = c.string(top.get("root_namespace", ROOT_NAMESPACE), "root_namespace")
    features = frozenset(c.strings(top.get("features", []), "features"))
    for f in sorted(features - ALL_FEATURES):
        raise c.fail("features", f"unknown feature {f!r}; known: {', '.join(sorted(ALL_FEATURES))}")
    given = c.mapping(top.get("components", {}), "components", frozenset(COMPONENT_FIELDS))
    components = MeshComponents(**{
        key: None if given[key] is None and key == "cni_agent"
        else c.string(given[key], f"components.{key}") for key in given})
    ca = None
    if "certificate_authority" in top:
        given = c.mapping(top["certificate_authority"], "certificate_authority",
                          frozenset({"url", "protocol", "audience"}))
        if "url" not in given:
            raise c.fail("certificate_authority.url", "required")
        protocol = c.string(given.get("protocol", "json-https"), "certificate_authority.protocol")
        if protocol not in CA_PROTOCOLS:
            raise c.fail("certificate_authority.protocol",
                         f"unknown protocol {protocol!r}; known: {', '.join(CA_PROTOCOLS)}")
        audience = given.get("audience")
        ca = CertificateAuthority(
            c.string(given["url"], "certificate_authority.url"), protocol,
            None if audience is None else c.string(audience, "certificate_authority.audience"))
    if ca is None and CA_IDENTITY_BINDING in features:
        raise c.fail("certificate_authority", f"missing, yet `features` claims "
                     f"{CA_IDENTITY_BINDING}: say where the CA is or drop the claim")
    return DeclarativeConfig(
        name,
        source,
        version,
        version_command,
        install,
        uninstall,
        enroll_label,
        tuple(waypoints),
        metrics,
        features,
        root_namespace,
        components,
        ca,
    )


def load_config(path: Path | str) -> DeclarativeConfig:
    """Read and validate an adapter file; every problem is an AdapterConfigError."""
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as exc:
        raise AdapterConfigError(f"{source}: cannot read adapter file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AdapterConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_config(data, source)


# -- the adapter ------------------------------------------------------------------------


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Replace only the known ``{placeholders}``: manifests legitimately contain braces."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _waypoint_recipe(c: _Checker, given: Any, where: str) -> WaypointRecipe:
    wp = c.mapping(given, where, frozenset({"flavours", "manifest", "commands", "deployment",
                                             "ready"}))
    flavours = frozenset(c.strings(wp.get("flavours", [FLAVOUR_TODAY]), f"{where}.flavours"))
    for f in sorted(flavours - ALL_FLAVOURS):
        raise c.fail(f"{where}.flavours", f"unknown flavour {f!r}; known: {sorted(ALL_FLAVOURS)}")
    manifest = c.typed(wp["manifest"], str, f"{where}.manifest") if "manifest" in wp else None
    commands = c.argv_list(wp.get("commands", []), f"{where}.commands")
    if manifest is None and not commands:
        raise c.fail(where, "needs `manifest` or `commands`")
    ready = c.mapping(wp.get("ready", {}), f"{where}.ready", frozenset({"condition"}))
    condition = ready.get("condition", "Programmed")
    return WaypointRecipe(
        flavours,
        manifest,
        commands,
        c.string(wp.get("deployment", "{name}"), f"{where}.deployment"),
        None if condition is None else c.string(condition, f"{where}.ready.condition"),
    )


# how long install.wait_namespaces waits for each namespace to be rolled out
WAIT_NAMESPACE_S = 120.0


class DeclarativeAdapter(MeshAdapter):
    """A :class:`MeshAdapter` whose every action comes from a :class:`DeclarativeConfig`."""

    def __init__(self, config: DeclarativeConfig, *, command_timeout: float = 600) -> None:
        self.config = config
        self.name = config.name
        self.command_timeout = command_timeout

    @classmethod
    def from_file(cls, path: Path | str) -> DeclarativeAdapter:
        return cls(load_config(path))

    # -- claims ---------------------------------------------------------------------------

    def version(self) -> str:
        if self.config.version is not None:
            return self.config.version
        if self.config.version_command:
            return self._run(self.config.version_command, None, {}).strip() or "unknown"
        return "unknown"

    def features(self) -> frozenset[str]:
        return self.config.features

    def api_flavours(self) -> frozenset[str]:
        return frozenset().union(*(r.flavours for r in self.config.waypoints))

    def metrics_locations(self) -> dict[str, str]:
        return dict(self.config.metrics)

    def enroll_labels(self) -> Mapping[str, str]:
        return self.config.enroll_label

    def root_namespace(self) -> str:
        return self.config.root_namespace

    def components(self) -> MeshComponents:
        return self.config.components

    def certificate_authority(self) -> CertificateAuthority | None:
        return self.config.certificate_authority

    def check_available(self, cluster: ClusterProvider) -> str | None:
        steps = [self.config.install, *([self.config.uninstall] if self.config.uninstall else [])]
        missing = [str(p) for s in steps for p in s.manifests if not p.is_file()]
        if missing:
            return f"{self.config.source}: manifests not found: {', '.join(missing)}"
        return None

    # -- running --------------------------------------------------------------------------

    def _run(
        self, argv: Sequence[str], cluster: ClusterProvider | None, values: Mapping[str, str]
    ) -> str:
        values = dict(values)
        env = dict(os.environ)
        if cluster is not None:
            values["kubeconfig"] = str(cluster.kubeconfig)
            env["KUBECONFIG"] = str(cluster.kubeconfig)
        full = [_fill(a, values) for a in argv]
        try:
            proc = subprocess.run(
                full,
                capture_output=True,
                text=True,
                env=env,
                cwd=self.config.source.parent,
                timeout=self.command_timeout,
            )
        except FileNotFoundError:
            raise AdapterError(f"{self.name}: command not found: {full[0]}") from None
        except subprocess.TimeoutExpired:
            raise AdapterError(f"{self.name}: {' '.join(full)} did not finish within "
                               f"{self.command_timeout:g}s") from None
        except OSError as exc:  # not executable, a folder, ...
            raise AdapterError(f"{self.name}: cannot run {full[0]}: {exc.strerror or exc}; "
                               "check the command's path and its execute permission") from None
        if proc.returncode != 0:
            raise AdapterError(
                f"{self.name}: {' '.join(full)} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()}"
            )
        return proc.stdout

    def install(self, cluster: ClusterProvider) -> None:
        steps = self.config.install
        for manifest in steps.manifests:
            cluster.apply(manifest)
        for argv in steps.commands:
            self._run(argv, cluster, {})
        for ns in steps.wait_namespaces:
            # kubectl's rollout rules for every Deployment and DaemonSet, listed at each
            # look, then every pod Ready: unlike ``kubectl wait pods --all``, pods that
            # do not exist yet are waited for, not an error
            try:
                wait_rolled_out(cluster, ns, timeout=WAIT_NAMESPACE_S)
            except NotConverged as exc:
                raise AdapterError(f"{self.name}: install.wait_namespaces: {exc}") from None

    def uninstall(self, cluster: ClusterProvider) -> None:
        steps = self.config.uninstall
        if steps is None:  # default: undo the install's manifests, last first
            steps = Steps(tuple(reversed(self.config.install.manifests)))
        for argv in steps.commands:
            self._run(argv, cluster, {})
        for manifest in steps.manifests:
            if manifest.is_file():
                cluster.delete(manifest)

    def add_waypoint(
        self,
        cluster: ClusterProvider,
        namespace: str,
        name: str,
        *,
        flavour: Flavour = FLAVOUR_TODAY,
        for_: str = "service",
        service_account: str | None = None,
    ) -> WaypointInfo:
        if not self.config.waypoints:
            raise AdapterError(f"{self.name} declares no `waypoint` recipe")
        recipe = next((r for r in self.config.waypoints if flavour in r.flavours), None)
        if recipe is None:
            raise AdapterError(
                f"{self.name} does not speak the {flavour!r} waypoint flavour "
                f"(declared: {sorted(self.api_flavours())})"
            )
        values = {
            "name": name,
            "namespace": namespace,
            "service_account": service_account or "",
            "for": for_,
        }
        if recipe.manifest is not None:
            rendered = _fill(recipe.manifest, values)
            try:
                docs = [d for d in yaml.safe_load_all(rendered) if d]
            except yaml.YAMLError as exc:
                raise AdapterConfigError(
                    f"{self.config.source}: field `waypoint.manifest` ({flavour}): not "
                    f"valid YAML once filled in: {exc}"
                ) from None
            cluster.apply(docs, namespace=namespace)
            if recipe.ready_condition:
                for doc in docs:
                    if isinstance(doc, dict) and doc.get("kind") == "Gateway":
                        self._wait(cluster, doc, namespace, recipe.ready_condition)
        for argv in recipe.commands:
            self._run(argv, cluster, values)
        return WaypointInfo(name, namespace, _fill(recipe.deployment, values), flavour)

    def _wait(
        self, cluster: ClusterProvider, doc: dict[str, Any], namespace: str, condition: str
    ) -> None:
        meta = doc.get("metadata") or {}
        try:
            cluster.wait(
                doc.get("apiVersion", ""),
                "Gateway",
                meta.get("name", ""),
                gateway_condition(condition),
                namespace=meta.get("namespace", namespace),
                timeout=120,
                description=f"condition {condition}=True",
            )
        except ClusterError as exc:
            raise AdapterError(f"{self.name}: waypoint not ready: {exc}") from exc
