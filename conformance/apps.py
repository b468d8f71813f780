"""The applications a test runs against: Bookinfo and the sleep/notsleep clients.

Each test module owns one or more namespaces (``AppNamespace``) holding Bookinfo
and the clients of the walkthrough, so modules run in parallel on one shared
cluster.  Everything here acts through the cluster provider and observes as a user
does: pods' status and annotations, and real curl inside the client pods.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from clusters.provider import ClusterError, ClusterProvider

from . import curl
from .adapters.base import MeshAdapter, WaypointInfo
from .canary_memory import CanaryMemory
from .metrics import Sample, total
from .metrics import parse as parse_exposition
from .rollout import wait_rolled_out
from .sequential import SequentialResult, SequentialSplit
from .waiting import NotConverged, eventually

T = TypeVar("T")

MANIFESTS = Path(__file__).resolve().parent / "manifests"
BOOKINFO = MANIFESTS / "bookinfo.yaml"
CLIENTS = MANIFESTS / "sleep.yaml"
INGRESS_GATEWAY = MANIFESTS / "bookinfo-gateway.yaml"
INGRESS_URL = "http://istio-ingressgateway.istio-system"
INGRESS_SA = "istio-system/sa/istio-ingressgateway-service-account"

# Real ambient implementations mark a pod whose traffic they redirect (istio-cni
# writes it; ztunnel's in-pod mode relies on it).  The suite waits on it after
# enrolling, so traffic is only sent once capture is in place.
REDIRECTION_ANNOTATION = "ambient.istio.io/redirection"

BATCH = 500
REVIEWS_VERSION = re.compile(r"reviews-(v\d+)-")


# A client whose only job is to show when a policy change is in force: after policies,
# a canary policy denying it for the same destination (the same Service at a waypoint,
# the same workload at a ztunnel) is applied.  Once the canary is denied the policies
# applied before it are in force too, whether or not they have a visible effect.  This
# assumes only that one kind's objects take effect in the order they were written: a
# control plane sees them through one watch, whose events come in the order of the
# writes (Kubernetes API concepts, "Efficient detection of changes"), and istiod builds
# each push from everything it has seen (ztunnel's Authorization resources, a
# waypoint's RBAC filter).  Nothing is assumed across kinds: ``apply_in_force`` refuses
# objects of another kind, and a route, a label or a DestinationRule is waited on by
# observing its own effect.
CANARY = "canary"


class CanaryNeverEnforced(AssertionError):
    """An earlier test's canary at the same enforcement point never converged: this
    test could not know when its change is in force, and fails at once."""


def same_kind(objects: list[dict[str, Any]], canary: dict[str, Any]) -> None:
    """Refuse to let a canary vouch for objects of another kind: an implementation may
    watch each kind on its own and push them separately (istiod does), so a canary
    policy being enforced says nothing about a route or a label written before it."""
    def group_kind(obj: dict[str, Any]) -> tuple[str, Any]:
        return obj.get("apiVersion", "").split("/")[0], obj.get("kind")

    other = sorted({f"{o.get('kind')}" for o in objects if group_kind(o) != group_kind(canary)})
    if other:
        raise ValueError(f"a {canary.get('kind')} canary cannot show that {', '.join(other)} "
                         "objects are in force: wait on their own effect instead")


def enforcement_point(canary: dict[str, Any]) -> str:
    """Where a canary policy is enforced: at a waypoint when it names its target with
    ``targetRefs`` (Istio attaches those to waypoints only and never sends them to
    ztunnel: istio/istio pilot/pkg/model/policyattachment.go,
    pilot/pkg/serviceregistry/ambient/authorization.go), else at the destination's
    ztunnel."""
    spec = canary.get("spec") or {}
    return "waypoint" if spec.get("targetRefs") else "ztunnel"


def canary_client() -> list[dict[str, Any]]:
    """The canary client's account and Deployment (a curl pod)."""
    labels = {"app": CANARY}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": CANARY}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": CANARY},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": CANARY, "terminationGracePeriodSeconds": 0,
                      "containers": [{"name": "curl", "image": "curlimages/curl",
                                      "command": ["/bin/sleep", "3650d"]}]}}}},
    ]


def client_workload(name: str, *, node: str | None = None) -> list[dict[str, Any]]:
    """A curl client with a service account of its own name (like ``sleep``), optionally
    pinned to ``node``: policy cases use clients whose names and namespaces tell
    Istio's matching rules apart, and co-located ones, whose identities only their
    certificates tell apart."""
    labels = {"app": name}
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name, "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "curl", "image": "curlimages/curl",
                        "command": ["/bin/sleep", "3650d"]}]}
    if node:
        pod_spec["nodeName"] = node
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": pod_spec}}},
    ]


def bookinfo_objects(*names: str) -> list[dict[str, Any]]:
    """The objects of the Bookinfo manifest with these names (e.g. details' Service,
    ServiceAccount and Deployment), for a namespace that needs only part of it."""
    docs = [d for d in yaml.safe_load_all(BOOKINFO.read_text()) if d]
    picked = [d for d in docs if d["metadata"]["name"] in names]
    missing = set(names) - {d["metadata"]["name"] for d in picked}
    if missing:
        raise ValueError(f"not in {BOOKINFO.name}: {', '.join(sorted(missing))}")
    return picked


def principal(namespace: str, service_account: str) -> str:
    """An Istio principal as written in AuthorizationPolicy (no ``spiffe://``)."""
    return f"cluster.local/ns/{namespace}/sa/{service_account}"


def deny_path_at_waypoint(ns: str, service: str, path: str) -> dict[str, Any]:
    """A DENY of one path for ``service``: L7, so only its waypoint can enforce it
    (``targetRefs`` policies go to waypoints only)."""
    return {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": f"deny-{service}-path", "namespace": ns},
            "spec": {"targetRefs": [{"kind": "Service", "group": "", "name": service}],
                     "action": "DENY", "rules": [{"to": [{"operation": {"paths": [path]}}]}]}}


@dataclass
class AppNamespace:
    """One namespace of the suite's, with helpers to act on and observe its apps."""

    cluster: ClusterProvider
    adapter: MeshAdapter
    name: str
    enrolled: bool = False
    waypoints: list[WaypointInfo] = field(default_factory=list)
    canaries: CanaryMemory = field(default_factory=CanaryMemory)

    # -- creation ----------------------------------------------------------------------

    @classmethod
    def create(cls, cluster: ClusterProvider, adapter: MeshAdapter, prefix: str, *,
               bookinfo: bool = True, clients: bool = True, ingress: bool = False,
               extra: list[dict[str, Any]] | None = None,
               canaries: CanaryMemory | None = None,
               timeout: float = 120) -> AppNamespace:
        name = f"{prefix}-{uuid.uuid4().hex[:5]}"
        ns = cls(cluster, adapter, name, canaries=canaries or CanaryMemory())
        # One kubectl apply for all of it (in order: the Namespace first), since every
        # kubectl run costs its start-up and discovery again.
        docs: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": name, "labels": {"ambient-harness/suite": "true"}}}]
        for wanted, manifest in ((bookinfo, BOOKINFO), (clients, CLIENTS)):
            if wanted:
                docs += [d for d in yaml.safe_load_all(manifest.read_text()) if d]
        docs += extra or []
        if ingress:
            docs += ns.ingress_manifests()
        cluster.apply(docs, namespace=name)
        ns.wait_ready(timeout)
        return ns

    def ingress_manifests(self) -> list[dict[str, Any]]:
        """The walkthrough's bookinfo-gateway, its host made unique to this namespace:
        many namespaces share one ingress gateway, and ``*`` would collide."""
        docs = [d for d in yaml.safe_load_all(INGRESS_GATEWAY.read_text()) if d]
        for d in docs:
            d["metadata"]["namespace"] = self.name
            if d["kind"] == "Gateway":
                for server in d["spec"]["servers"]:
                    server["hosts"] = [self.ingress_host]
            else:
                d["spec"]["hosts"] = [self.ingress_host]
        return docs

    @property
    def ingress_host(self) -> str:
        return f"{self.name}.bookinfo.test"

    def wait_ready(self, timeout: float = 120) -> None:
        """Every Deployment rolled out and every pod Ready, as ``kubectl rollout
        status`` and ``kubectl wait`` judge them (conformance/rollout.py)."""
        wait_rolled_out(self.cluster, self.name, timeout)

    def delete(self) -> None:
        """Delete the namespace without waiting: its objects go in the background, and
        the cluster is torn down at the end of the run anyway."""
        self.cluster.kubectl("delete", "namespace", self.name, "--wait=false",
                             "--ignore-not-found", check=False)

    # -- mesh membership ---------------------------------------------------------------

    def enroll(self, timeout: float = 60) -> None:
        self.adapter.enroll(self.cluster, self.name)
        self.enrolled = True
        self.wait_redirection(True, timeout)

    def unenroll(self, timeout: float = 60) -> None:
        self.adapter.unenroll(self.cluster, self.name)
        self.enrolled = False
        self.wait_redirection(False, timeout)

    def pods(self, selector: str = "", namespace: str | None = None) -> list[dict[str, Any]]:
        """This namespace's pods (or ``namespace``'s), those being deleted left out."""
        args = ["get", "pods", "-n", namespace or self.name, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items = yaml.safe_load(self.cluster.kubectl(*args).stdout)["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def pod(self, app: str) -> dict[str, Any]:
        pods = self.pods(f"app={app}")
        if not pods:
            raise ClusterError(f"no pod with app={app} in {self.name}")
        return sorted(pods, key=lambda p: p["metadata"]["name"])[0]

    def wait_redirection(self, enabled: bool, timeout: float = 60) -> None:
        """Until every app pod carries (or no longer carries) the redirection
        annotation.  Waypoint pods are the mesh's own and are left out."""
        def state() -> dict[str, str | None]:
            return {p["metadata"]["name"]:
                    (p["metadata"].get("annotations") or {}).get(REDIRECTION_ANNOTATION)
                    for p in self.pods() if not _is_waypoint_pod(p)}
        want = "enabled" if enabled else None
        eventually(state, lambda s: bool(s) and all(v == want for v in s.values()),
                   what=f"every pod in {self.name} has {REDIRECTION_ANNOTATION}="
                        f"{want or '(absent)'}", timeout=timeout)

    # -- waypoints -----------------------------------------------------------------------

    def add_waypoint(self, name: str, *, flavour: str, service_account: str | None = None,
                     for_: str = "service") -> WaypointInfo:
        wp = self.adapter.add_waypoint(self.cluster, self.name, name, flavour=flavour,  # type: ignore[arg-type]
                                       for_=for_, service_account=service_account)
        self.waypoints.append(wp)
        return wp

    def use_waypoint(self, kind: str, name: str, waypoint: WaypointInfo) -> None:
        self.adapter.use_waypoint(self.cluster, self.name, kind, name, waypoint)  # type: ignore[arg-type]

    def remove_waypoint(self, waypoint: WaypointInfo) -> None:
        self.adapter.remove_waypoint(self.cluster, waypoint)
        if waypoint in self.waypoints:
            self.waypoints.remove(waypoint)

    # -- changes known to be in force (the canary) -----------------------------------------

    def apply_in_force(self, objects: list[dict[str, Any]], canary: dict[str, Any], url: str,
                       denied: Callable[[curl.Response], bool]) -> None:
        """Apply ``objects``, then ``canary`` (a policy denying the canary client at the
        same enforcement point), and return once the canary client's request to ``url``
        is ``denied``.

        Fails at once, applying nothing, when a canary at the same enforcement point
        never converged earlier in the run; and when this one never does, says so to
        the rest of the run (``canary_memory.py``).  Only objects of the canary's own
        kind may ride on it (see ``CANARY``)."""
        same_kind(objects, canary)
        point = self.canary_usable(canary)
        self.cluster.apply([*objects, canary])
        self.await_canary(point, lambda: self.request(CANARY, url), denied,
                           "the canary policy applied after the change is in force",
                           "never enforced")

    def delete_in_force(self, objects: list[dict[str, Any]], canary: dict[str, Any], url: str,
                        allowed: Callable[[curl.Response], bool]) -> None:
        """Delete ``objects`` and then ``canary``; return once the canary client's
        request to ``url`` is ``allowed`` again.  A canary never lifted is remembered
        too: a later canary at that point could otherwise look enforced at once."""
        same_kind(objects, canary)
        self.cluster.delete([*objects, canary])
        self.await_canary(enforcement_point(canary), lambda: self.request(CANARY, url),
                           allowed, "the change and the canary are gone", "never lifted")

    def canary_usable(self, canary: dict[str, Any]) -> str:
        """The canary's enforcement point; raises ``CanaryNeverEnforced`` at once when a
        canary there never converged earlier in the run."""
        point = enforcement_point(canary)
        reason = self.canaries.failed(point)
        if reason is not None:
            raise CanaryNeverEnforced(
                f"not run: a canary policy at the {point} did not converge earlier in this "
                f"run, so no change there can be known to be in force: {reason}")
        return point

    def await_canary(self, point: str, observe: Callable[[], T],
                     holds: Callable[[T], bool], what: str, failure: str) -> None:
        """Wait until ``holds(observe())``; when it never does, remember it for the
        rest of the run under ``point`` and raise."""
        try:
            eventually(observe, holds, what=what)
        except NotConverged as exc:
            self.canaries.remember(point, f"{failure} (namespace {self.name}): {exc}"[:1000])
            raise

    # -- traffic -------------------------------------------------------------------------

    def request(self, from_client: str, url: str, *, method: str = "GET",
                headers: dict[str, str] | None = None, data: str | None = None,
                timeout: float = 10, insecure: bool = False) -> curl.Response:
        """One HTTP request with the real curl inside ``deploy/<from_client>``."""
        argv = curl.curl_argv(url, method=method, headers=headers, data=data, timeout=timeout,
                              insecure=insecure)
        r = self.cluster.exec(self.name, f"deploy/{from_client}", argv, timeout=timeout + 30)
        return curl.parse(r.exit_code, r.stdout, r.stderr)

    def request_each(self, from_client: str, urls: list[str], *, timeout: float = 10,
                     per_second: int | None = None) -> list[curl.Outcome]:
        """One GET to each of ``urls`` from ``deploy/<from_client>``, each on its own
        connection, with one curl (``curl.each_argv``); outcomes in URL order."""
        argv = curl.each_argv(urls, timeout=timeout, per_second=per_second)
        r = self.cluster.exec(self.name, f"deploy/{from_client}", argv,
                              timeout=30 + timeout * len(urls))
        try:
            return curl.parse_each(r.stdout, len(urls))
        except ValueError as exc:
            raise AssertionError(f"{self.name}/{from_client}: {exc} (curl exit {r.exit_code}: "
                                 f"{r.stderr.strip()[:300]})") from None

    def ingress(self, path: str, *, from_client: str = "sleep", method: str = "GET",
                headers: dict[str, str] | None = None) -> curl.Response:
        return self.request(from_client, f"{INGRESS_URL}{path}", method=method,
                            headers={"Host": self.ingress_host, **(headers or {})})

    def batch(self, from_client: str, url: str, count: int, *,
              headers: dict[str, str] | None = None,
              timeout: float = 10) -> list[tuple[int, str]]:
        """``count`` requests, (status, body) each, from curl processes of at most
        ``BATCH`` requests (one connection each; long URL lists slow curl down)."""
        results: list[tuple[int, str]] = []
        while len(results) < count:
            chunk = min(BATCH, count - len(results))
            argv = curl.batch_argv(url, chunk, headers=headers, timeout=timeout)
            r = self.cluster.exec(self.name, f"deploy/{from_client}", argv,
                                  timeout=60 + chunk * 0.5)
            answered = curl.parse_batch(r.stdout)
            if len(answered) != chunk:
                raise AssertionError(f"{chunk} requests sent, {len(answered)} answered "
                                     f"(curl exit {r.exit_code}: {r.stderr.strip()[:300]})")
            results += answered
        return results

    def reviews_versions(self, from_client: str, url: str, count: int,
                         headers: dict[str, str] | None = None) -> Counter[str]:
        """Which reviews version answered each of ``count`` requests (``reviews-vN``);
        an answer naming no version counts as ``status-<code>``."""
        counts: Counter[str] = Counter()
        for status, body in self.batch(from_client, url, count, headers=headers):
            m = REVIEWS_VERSION.search(body)
            counts[f"reviews-{m.group(1)}" if m and status == 200 else f"status-{status}"] += 1
        return counts

    def sample_split(self, from_client: str, url: str, weights: dict[str, float], *,
                     headers: dict[str, str] | None = None) -> SequentialResult:
        """Judge a weighted route to reviews: batches of requests, one per look of the
        sequential test (conformance/sequential.py), until it decides.  Weights name
        every version meant to get traffic; a version of weight 0, another name or an
        error answer is unexpected and fails the split at once."""
        run = SequentialSplit(weights)
        while not run.done:
            run.observe(self.reviews_versions(from_client, url, run.design.look_every,
                                              headers=headers))
        return run.result()

    def metrics(self, namespace: str, target: str, location: str) -> str:
        """Prometheus text from ``target`` (``deploy/x`` or a pod), read from inside it
        as the walkthrough does (``curl localhost:15020/stats/prometheus``)."""
        port, _, path = location.partition("/")
        r = self.cluster.exec(namespace, target,
                              ["curl", "-sS", "--max-time", "10", f"http://localhost:{port}/{path}"])
        if r.exit_code != 0:
            raise AssertionError(f"metrics of {namespace}/{target} at :{location} not readable: "
                                 f"curl exit {r.exit_code}: {r.stderr.strip()}")
        return r.stdout

    def ztunnel_metrics(self, node: str) -> list[Sample]:
        """The samples of the ztunnel on ``node`` (a pod labelled ``app=ztunnel`` in
        istio-system, as Istio's DaemonSet labels it), at the adapter's location."""
        pods = [p for p in self.pods("app=ztunnel", namespace="istio-system")
                if p["spec"].get("nodeName") == node]
        if not pods:
            raise AssertionError(f"no ztunnel pod on node {node}")
        text = self.metrics("istio-system", pods[0]["metadata"]["name"],
                            self.adapter.metrics_locations()["ztunnel"])
        return parse_exposition(text)

    def inbound_connections(self, app: str, **labels: str) -> float:
        """How many connections to this namespace's ``app`` pod the ztunnel on its node
        counted as their destination (``istio_tcp_connections_opened_total`` with
        ``reporter="destination"``, istio/ztunnel src/proxy/metrics.rs), among those
        whose labels also match ``labels``."""
        pod = self.pod(app)
        return total(self.ztunnel_metrics(pod["spec"]["nodeName"]),
                     "istio_tcp_connections_opened_total", reporter="destination",
                     destination_workload_namespace=self.name,
                     destination_workload=_workload_name(pod), **labels)


def _workload_name(pod: dict[str, Any]) -> str:
    """The ``destination_workload`` ztunnel reports for a pod of a Deployment: the
    Deployment's name, i.e. the pod's ReplicaSet owner minus its pod-template hash."""
    for owner in pod["metadata"].get("ownerReferences") or ():
        if owner.get("kind") == "ReplicaSet":
            return owner["name"].rsplit("-", 1)[0]
    return pod["metadata"]["name"]


def _is_waypoint_pod(pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return ("gateway.networking.k8s.io/gateway-name" in labels
            or labels.get("ambient-type") == "waypoint"
            or "istio.io/gateway-name" in labels)
