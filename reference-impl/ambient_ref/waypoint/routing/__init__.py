"""Routing on a waypoint: where one HTTP request addressed to one Service goes.

Sources: the API (istio/api networking/v1alpha3/virtual_service.proto and
destination_rule.proto; Gateway API's HTTPRoute), Istio's samples
(samples/bookinfo/networking/ and samples/bookinfo/gateway-api/ in istio/istio), its
waypoint tests (istio/istio tests/integration/ambient/baseline_test.go:
``TestTrafficSplit``, ``TestServerRouting``, ``TestWaypointWithInvalidBackend``) and the
walkthrough's step 9 (conformance/suite/test_walkthrough.py in the harness).  Everything
here is pure: build a ``RouteTable`` from Kubernetes objects (dicts), then ask
``RouteTable.route`` for one ``RouteDecision`` per request.  Randomness (weights, fault
percentages) comes only from the ``random.Random`` the caller passes, so a seeded
generator gives repeatable runs.

Which configuration applies to a Service, in order:

1. **HTTPRoute** (``gateway.networking.k8s.io`` v1/v1beta1) whose ``parentRefs`` name the
   Service (``group`` ``""`` or ``core``, ``kind: Service``, ``namespace`` defaulting to
   the route's, optional ``port``/``sectionName`` restricting the port).  If any HTTPRoute
   targets the Service, VirtualServices for it are ignored.  *Decision*: the Gateway API
   producer route is the newer, Service-attached API that istiod translates into its
   internal VirtualService for the waypoint, and a mix is a configuration mistake; letting
   the explicitly attached object win keeps the outcome independent of creation order.
2. **VirtualService** with no ``gateways`` (or one listing ``mesh``) whose ``hosts`` name
   the Service: a short name resolves in the VirtualService's namespace, ``name.ns``,
   ``name.ns.svc`` and ``name.ns.svc.cluster.local`` are qualified; ``*`` and
   ``*.suffix`` wildcards match by FQDN suffix and are used only when no VirtualService
   names the Service exactly (a VirtualService listing both kinds keeps only its exact
   hosts).  Several VirtualServices for one Service are merged, their
   ``http`` rules concatenated oldest first (``creationTimestamp``, then namespace/name),
   as waypoints do since istio/istio#59484.
3. Nothing: the **default route** to the Service itself, any endpoint, the request's port.

Matching.  VirtualService ``http`` rules are ordered and the first match wins; ``match[]``
entries are ORed and the fields inside one entry ANDed; a rule without ``match`` matches
everything.  HTTPRoute (rule, match) pairs are sorted by Gateway API precedence (exact
path, then regular expression, then longest prefix; then a method match; then more
header matches; then more query matches; then the older route, namespace/name, and rule
order) and the first match wins; a rule without ``matches`` is ``PathPrefix /``.  No
match at all is Envoy's ``404 NR``.  Paths are matched without their query string.
``ignoreUriCase`` applies to exact and prefix URIs only (Envoy ignores ``case_sensitive``
for regular expressions).  Regular expressions use ``re.fullmatch`` (close to RE2 for
the patterns used in practice).  ``withoutHeaders`` matches when the header is absent or
its value does not match.  A header's repeated values are joined with ``,`` as Envoy does.

Destinations.  ``route[]``/``backendRefs`` weights choose one destination per request
(share = weight / sum); a single VirtualService destination gets everything whatever
its weight; weight 0 gets nothing; a backendRef weight defaults to 1.  A VirtualService
subset is looked up in the DestinationRule(s) for the destination host (all
DestinationRules for one host are merged, the first definition of a subset winning); the
decision carries the subset ``labels`` and the waypoint picks an endpoint of the Service
whose workload labels include them.

Errors (``kind="error"``, status in ``abort_status``).  Every way a chosen destination
cannot be reached is reported as **500** with a reason: an undefined subset, an unknown
host or Service backend, a Service without the requested port, a cross-namespace
backendRef (ReferenceGrant is not modelled, so it is treated as not permitted), a rule
whose weights are all 0, and a matched rule using a feature this module does not model
(``redirect``, ``directResponse``, ``delegate``, ``URLRewrite`` ...).  Gateway API
mandates 500 for an invalid backend (``TestWaypointWithInvalidBackend``); real Envoy
answers an undefined VirtualService subset with ``503 NC`` (no cluster), which this
reference folds into the same 500 so callers have one status meaning "the route points
nowhere".  An unknown Service is 500 as well; no route matching is 404.

Faults (VirtualService only).  ``fault.delay`` and ``fault.abort`` inject only with a
``percentage`` (``percentage.value``, 0-100); without one nothing is injected.  The
delay is drawn first, then the abort, then the weighted destination (Envoy's fault
filter runs before the router); an aborted request still carries its delay.

Other fields.  ``timeout`` (0 disables), ``retries`` (``attempts: 0`` or a missing
``attempts`` disables them; otherwise the mesh default ``retryOn`` unless given) and
``headers.request`` set/add/remove from the rule and the chosen destination; HTTPRoute
``RequestHeaderModifier`` filters on the rule and on the backendRef and
``timeouts.request``.  Routes without explicit retries carry ``DEFAULT_RETRY``, the mesh
default.

Bad objects never raise.  An object the API server's validation would reject (missing
name, a malformed match, a regex that does not compile, an unparsable duration, a
negative weight ...) is skipped entirely and reported in ``RouteTable.problems``; a
valid object using an unmodelled feature is kept, the affected rule or match is made
fail-safe (the rule answers 500, the match entry never matches) and a problem with
``skipped=False`` says so.

Modules, each with one job; each imports only modules listed above it:

* ``model.py``: the request, the decision and the compiled rules; matching a request.
* ``reading.py``: reading Kubernetes objects defensively; ``Problem``; durations.
* ``services.py``: host name to Service, a Service's ports.
* ``faults.py``, ``retries.py``: a VirtualService rule's ``fault`` and ``retries``.
* ``subsets.py``: the DestinationRule compiler.
* ``virtualservice.py``, ``httproute.py``: the two route compilers.
* ``table.py``: ``RouteTable``, which builds from all of them and routes requests.

The public names are re-exported here; underscore names are shared between the
package's modules only.
"""

from .httproute import GATEWAY_API_GROUP
from .model import (
    DEFAULT_RETRY,
    MATCH_ALL,
    NO_HEADER_OPS,
    STATUS_BAD_ROUTE,
    STATUS_NO_ROUTE,
    HeaderOps,
    HttpRequest,
    Retry,
    RouteDecision,
    ServiceKey,
    apply_header_ops,
)
from .reading import Problem, parse_duration
from .services import DOMAIN_SUFFIX, resolve_host
from .table import RouteTable
from .virtualservice import ISTIO_NETWORKING_GROUP, MESH_GATEWAY

__all__ = [
    "DEFAULT_RETRY",
    "DOMAIN_SUFFIX",
    "GATEWAY_API_GROUP",
    "ISTIO_NETWORKING_GROUP",
    "MATCH_ALL",
    "MESH_GATEWAY",
    "NO_HEADER_OPS",
    "STATUS_BAD_ROUTE",
    "STATUS_NO_ROUTE",
    "HeaderOps",
    "HttpRequest",
    "Problem",
    "Retry",
    "RouteDecision",
    "RouteTable",
    "ServiceKey",
    "apply_header_ops",
    "parse_duration",
    "resolve_host",
]
