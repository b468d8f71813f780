"""HTTP: turns Kubernetes REST requests into ``Api`` calls and renders the answers.

One catch-all route parses the path the way the real server's path grammar goes
(``/api/v1/namespaces/{ns}/{resource}/{name}/{subresource}`` and the
``/apis/{group}/{version}/...`` form), so every resource, built-in or custom, gets
the same handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from . import discovery, errors, eviction, listoptions, openapi, protobuf, tables
from .api import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    Api,
    DeleteOptions,
    WriteOptions,
)
from .negotiation import YAML, Output, negotiate
from .resources import ResourceType
from .selectors import (
    SelectorError,
    check_field_selector,
    parse_field_selector,
    parse_label_selector,
)

log = logging.getLogger("apiserver")

PUBLIC_PATHS = {"/healthz", "/livez", "/readyz", "/version"}
DEFAULT_WATCH_SECONDS = 1800

# Subresources served by someone other than this module (the node side serves logs
# and exec): name -> handler(request, api, rt, ns, name) -> response.
SubresourceHandler = Callable[..., Awaitable[web.StreamResponse]]


def warning_header(texts: list[str]) -> str:
    """``Warning`` header values as Kubernetes writes them (k8s.io/apimachinery
    pkg/util/net/http.go ``NewWarningHeader``): code 299, agent ``-``, the text quoted
    with ``\\`` and ``"`` escaped; a text with a control character is not sent at all
    (the real server drops it), which also keeps a field named ``"\\x1f"`` from
    breaking the response's headers."""
    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    kept = [t for t in texts if not any(unicodedata.category(c) == "Cc" for c in t)]
    return ", ".join(f"299 - {quoted(t)}" for t in kept)


@dataclass
class Target:
    group: str
    version: str
    rt: ResourceType
    namespace: str | None  # None: all namespaces (or a cluster-scoped kind)
    name: str | None
    subresource: str | None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json", headers=headers)


def _respond(out: Output, body: Any, status: int = 200,
             headers: dict[str, str] | None = None) -> web.Response:
    """``body`` in the negotiated media type (JSON, or YAML when that was preferred)."""
    if out.media_type == YAML:
        return web.Response(body=yaml.safe_dump(body, sort_keys=False).encode(),
                            status=status, content_type=YAML, headers=headers)
    return _json(body, status, headers)


def error_response(exc: errors.ApiError) -> web.Response:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return _json(exc.status(), exc.code, headers)


class Handlers:
    def __init__(self, api: Api, admin_token: str, address: str) -> None:
        self.api = api
        self.admin_token = admin_token
        self.address = address
        self.subresource_handlers: dict[str, SubresourceHandler] = {}
        self._openapi_cache: dict[str, tuple[int, Any]] = {}

    # -- entry point ------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if request.path not in PUBLIC_PATHS:
                request["user"] = self._authenticate(request)
            return await handler(request)
        except errors.ApiError as exc:
            return error_response(exc)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug of ours: say so, keep serving
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            return error_response(errors.ApiError(
                500, "InternalError", f"Internal error occurred: {type(exc).__name__}: {exc}"))

    def _authenticate(self, request: web.Request) -> dict[str, Any]:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise errors.unauthorized()
        token = auth[len("Bearer "):].strip()
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return {"username": "admin", "groups": ["system:masters", "system:authenticated"]}
        user = self.api.hooks.authenticate_sa_token(token)
        if user is None:
            raise errors.unauthorized()
        return user

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return _json(discovery.KUBERNETES_VERSION)
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == "openapi":
            return self._openapi(request, parts[1:])
        if not parts or parts[0] not in ("api", "apis"):
            if path == "/":
                return _json({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez",
                                        "/openapi/v2", "/openapi/v3", "/readyz", "/version"]})
            raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                                  "resource")
        discovery_doc = self._discovery(parts)
        if discovery_doc is not None:
            if request.method != "GET":
                raise errors.method_not_allowed(f"{request.method} is not allowed on {path}")
            return _json(discovery_doc)
        target = self._target(parts)
        return await self._serve(request, target)

    # -- discovery and OpenAPI ----------------------------------------------------

    def _discovery(self, parts: list[str]) -> dict[str, Any] | None:
        reg = self.api.registry
        not_found = errors.ApiError(404, "NotFound",
                                    "the server could not find the requested resource")
        if parts == ["api"]:
            return discovery.api_versions(self.address)
        if parts == ["apis"]:
            return discovery.api_group_list(reg)
        if parts[0] == "api" and len(parts) == 2:
            doc = discovery.api_resource_list(reg, "", parts[1])
            if doc is None:
                raise not_found
            return doc
        if parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(reg, parts[1])
            if doc is None:
                raise not_found
            return doc
        if parts[0] == "apis" and len(parts) == 3:
            doc = discovery.api_resource_list(reg, parts[1], parts[2])
            if doc is None:
                raise not_found
            return doc
        return None

    def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        reg = self.api.registry
        generation = self.api.hooks.registry_generation
        if parts == ["v3"]:
            gvs = [f"api/{v}" if not g else f"apis/{g}/{v}"
                   for g, vs in sorted(reg.group_versions().items()) for v in vs]
            return _json(self._cached("root", generation,
                                      lambda: openapi.openapi_v3_root(gvs, self._gv_doc)))
        if parts and parts[0] == "v3" and len(parts) in (3, 4):
            if parts[1] == "api" and len(parts) == 3:
                group, version = "", parts[2]
            elif parts[1] == "apis" and len(parts) == 4:
                group, version = parts[2], parts[3]
            else:
                raise errors.ApiError(404, "NotFound", "no such OpenAPI document")
            if not reg.in_group_version(group, version):
                raise errors.ApiError(404, "NotFound", "no such OpenAPI document")
            doc = self._cached(f"{group}/{version}", generation,
                               lambda: self._gv_doc(group, version))
            return _json(doc)
        if parts == ["v2"]:
            # kubectl falls back to v2 only to learn it has no schema for a kind
            # (which then fails as "no matches for kind"); schemas live in v3.
            if "protobuf" in request.headers.get("Accept", ""):
                return web.Response(body=openapi.openapi_v2_protobuf(),
                                    content_type=openapi.OPENAPI_V2_PROTOBUF)
            return _json(openapi.openapi_v2_document())
        raise errors.ApiError(404, "NotFound", "the server could not find the requested "
                              "resource")

    def _gv_doc(self, group: str, version: str) -> dict[str, Any]:
        return self._cached(
            f"{group}/{version}", self.api.hooks.registry_generation,
            lambda: openapi.openapi_v3_document(group, version, [
                openapi.ResourceInfo.of(rt, version)
                for rt in self.api.registry.in_group_version(group, version)
            ]),
        )

    def _cached(self, key: str, generation: int, build: Callable[[], Any]) -> Any:
        hit = self._openapi_cache.get(key)
        if hit is None or hit[0] != generation:
            hit = (generation, build())
            self._openapi_cache[key] = hit
        return hit[1]

    # -- resource paths ---------------------------------------------------------

    def _target(self, parts: list[str]) -> Target:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) < 4:
                raise errors.ApiError(404, "NotFound", "the server could not find the "
                                      "requested resource")
            group, version, rest = parts[1], parts[2], parts[3:]
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (
            group == "" and rest[2] in ("status", "finalize") and len(rest) == 3
        ):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        rt = self.api.registry.resolve(group, version, plural)
        if rt is None:
            raise errors.ApiError(
                404, "NotFound",
                f"the server could not find the requested resource ({plural}"
                f"{'.' + group if group else ''}/{version} is not served)",
            )
        if namespace is not None and not rt.namespaced:
            raise errors.ApiError(404, "NotFound", f"{plural} is not a namespaced resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        # proxy is followed by the path to ask the pod for (proxy.py)
        if (len(rest) > 3 and sub != "proxy") or (sub and sub not in rt.subresources):
            # With details, as client-go's errors for a 404 always have them: kubectl
            # debug reads details.name of this one, and crashed on a Status without.
            hint = ("; ephemeral containers are not served by the local cluster: use "
                    "kubectl exec, or kubectl debug --copy-to=<new pod>"
                    if sub == "ephemeralcontainers" else "")
            raise errors.ApiError(404, "NotFound",
                                  f"the server could not find the requested resource "
                                  f"({'/'.join(rest[2:])} of {plural}){hint}",
                                  kind=plural, group=rt.group)
        if rt.namespaced and name is not None and namespace is None:
            raise errors.ApiError(404, "NotFound",
                                  f"{plural} is namespaced: address it under "
                                  "/namespaces/<namespace>/")
        return Target(group, version, rt, namespace, name, sub)

    async def _serve(self, request: web.Request, t: Target) -> web.StreamResponse:
        method = request.method
        q = request.query
        api = self.api
        ns = t.namespace or ""
        if t.subresource and t.subresource in self.subresource_handlers:
            return await self.subresource_handlers[t.subresource](request, api, t.rt, ns, t.name)
        # The representation is settled before anything is done, as on the real server
        # (a 406 creates nothing).
        watching = method == "GET" and t.name is None and q.get("watch") in ("true", "1")
        out = negotiate(request.headers.get("Accept"), stream=watching)
        if t.name is None:
            if method == "GET":
                opts_list = listoptions.parse(q)
                if watching:
                    return await self._watch(request, t, out, opts_list)
                return self._list(request, t, out)
            if method == "POST":
                if t.rt.namespaced and t.namespace is None:
                    raise errors.method_not_allowed(
                        f"create {t.rt.plural} under /namespaces/<namespace>/")
                opts = _write_opts(q, "CreateOptions", request.headers)
                opts.user = request.get("user")
                body = await _body(request)
                obj = api.create(t.rt, t.version, ns, body, opts)
                # 201 for every create, TokenReview too (the real createHandler)
                return self._object(request, t, out, obj, 201, opts)
            if method == "DELETE":
                body = await _body(request, optional=True)
                labels, fields = _selectors(q, t.rt)
                items = api.delete_collection(t.rt, t.namespace, labels, fields,
                                              DeleteOptions.from_body(body, dict(q)))
                return self._items(request, t, out,
                                   [api.present(t.rt, o, t.version) for o in items],
                                   api.store.resource_version)
            raise errors.method_not_allowed(f"{method} is not allowed on a collection")
        name = t.name
        sub = t.subresource
        if sub == "scale":
            return await self._scale(request, t, out)
        if sub == "token" and method == "POST":
            body = await _body(request, optional=True)
            return _respond(out, api.hooks.request_token(ns, name, body or {}), 201)
        if sub == "binding" and method == "POST":
            body = await _body(request)
            return _respond(out, self._bind(t, ns, name, body), 201)
        if sub == "eviction" and method == "POST":
            body = await _body(request)
            return _respond(out, self._evict(t, ns, name, body), 201)
        if sub in ("log", "exec", "attach", "portforward", "proxy"):
            raise errors.bad_request(
                f"pods/{sub} is not available: no node agent runs this pod's containers")
        if sub == "finalize" and method == "PUT":
            body = await _body(request)
            return self._object(request, t, out, api.update(t.rt, t.version, ns, name, body,
                                                            subresource=None), 200)
        if sub not in (None, "status"):
            raise errors.method_not_allowed(f"{method} is not allowed on {t.rt.plural}/{sub}")
        if method == "GET":
            return self._object(request, t, out, api.get(t.rt, ns, name))
        if method == "PUT":
            opts = _write_opts(q, "UpdateOptions", request.headers)
            body = await _body(request)
            return self._object(request, t, out, api.update(t.rt, t.version, ns, name, body,
                                                            opts, subresource=sub), 200, opts)
        if method == "PATCH":
            opts = _write_opts(q, "PatchOptions", request.headers)
            body = await _body(request)
            ctype = request.content_type
            obj = api.patch(t.rt, t.version, ns, name, ctype, body, opts, subresource=sub)
            return self._object(request, t, out, obj, 201 if opts.created else 200, opts)
        if method == "DELETE":
            body = await _body(request, optional=True)
            return self._object(request, t, out, api.delete(
                t.rt, ns, name, DeleteOptions.from_body(body, dict(q))))
        raise errors.method_not_allowed(f"{method} is not allowed on {t.rt.plural}")

    def _evict(self, t: Target, ns: str, name: str, body: Any) -> dict[str, Any]:
        """pods/eviction: the pod's delete, unless a disruption budget refuses it."""
        if not isinstance(body, dict) or body.get("kind") != "Eviction":
            raise errors.bad_request("pods/eviction takes an Eviction (policy/v1)")
        pod = self.api.get(t.rt, ns, name)
        pdb_rt = self.api.registry.get("policy", "poddisruptionbudgets")
        assert pdb_rt is not None
        eviction.check(pod, list(self.api.store.items(pdb_rt.store_key, ns)),
                       list(self.api.store.items(t.rt.store_key, ns)))
        self.api.delete(t.rt, ns, name, DeleteOptions.from_body(body.get("deleteOptions"), {}))
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    # -- rendering --------------------------------------------------------------

    def _object(self, request: web.Request, t: Target, out: Output, obj: dict[str, Any],
                code: int = 200, opts: WriteOptions | None = None) -> web.Response:
        headers = {}
        if opts is not None and opts.warnings:
            # Like the real server: unknown fields dropped under fieldValidation=Warn.
            warning = warning_header(opts.warnings[:10])
            if warning:
                headers["Warning"] = warning
        obj = self.api.present(t.rt, obj, t.version)
        if out.transform == "Table":
            return _respond(out, self._table(request, t, out, [obj], obj["metadata"].get(
                "resourceVersion", "")), code, headers)
        if out.transform == "PartialObjectMetadata":
            return _respond(out, _partial(obj, out), code, headers)
        if out.transform == "PartialObjectMetadataList":
            raise _not_acceptable("you requested PartialObjectMetadataList, but the requested "
                                  f"object is not a list ({t.rt.kind})")
        return _respond(out, obj, code, headers)

    def _list_doc(self, t: Target, items: list[dict[str, Any]], rv: int,
                  cont: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if cont:
            meta["continue"] = cont
        return {"kind": t.rt.list_kind, "apiVersion": t.rt.api_version(t.version),
                "metadata": meta, "items": items}

    def _items(self, request: web.Request, t: Target, out: Output,
               items: list[dict[str, Any]], rv: int, cont: str | None = None) -> web.Response:
        """A list in the negotiated form (k8s.io/apiserver ``transformResponseObject``)."""
        if out.transform == "Table":
            table = self._table(request, t, out, items, str(rv))
            if cont:
                table["metadata"]["continue"] = cont
            return _respond(out, table)
        if out.transform == "PartialObjectMetadataList":
            return _respond(out, {
                "kind": "PartialObjectMetadataList", "apiVersion": out.transform_api_version,
                "metadata": {"resourceVersion": str(rv), **({"continue": cont} if cont else {})},
                "items": [_partial(o, out) for o in items]})
        if out.transform == "PartialObjectMetadata":
            raise _not_acceptable("you requested PartialObjectMetadata, but the requested "
                                  f"object is a list ({t.rt.list_kind})")
        return _respond(out, self._list_doc(t, items, rv, cont))

    def _table(self, request: web.Request, t: Target, out: Output,
               objs: list[dict[str, Any]], rv: str) -> dict[str, Any]:
        return tables.to_table(
            t.rt.kind, objs,
            include_object=request.query.get("includeObject", "Metadata"),
            resource_version=rv,
            printer_columns=t.rt.printer_columns(t.version) if t.rt.custom else None,
            api_version=out.transform_api_version,
        )

    def _list(self, request: web.Request, t: Target, out: Output) -> web.Response:
        labels, fields = _selectors(request.query, t.rt)
        items, rv = self.api.list(t.rt, t.namespace, labels, fields)
        items, cont = _page(items, request.query)
        items = [self.api.present(t.rt, o, t.version) for o in items]
        return self._items(request, t, out, items, rv, cont)

    async def _watch(self, request: web.Request, t: Target, out: Output,
                     opts: listoptions.ListOptions) -> web.StreamResponse:
        q = request.query
        labels, fields = _selectors(q, t.rt)
        try:
            timeout = int(q.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        except ValueError:
            raise errors.bad_request("timeoutSeconds must be an integer") from None
        try:
            stream = self.api.watch(t.rt, t.namespace, opts, labels, fields)
        except errors.ApiError as exc:
            if exc.code != 410:
                raise
            # As the real server does: a 200 whose only event is an ERROR Status.
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(orjson.dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
            await response.write_eof()
            return response
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def pump() -> None:
            async for kind, obj in stream:
                if kind != "ERROR":
                    obj = self._watch_object(request, t, out, kind, obj)
                await response.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")

        try:
            await asyncio.wait_for(pump(), timeout)
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    def _watch_object(self, request: web.Request, t: Target, out: Output, kind: str,
                      obj: dict[str, Any]) -> dict[str, Any]:
        """An event's object in the negotiated form.  Every event is transformed,
        bookmarks too (the metadata informer decodes each as PartialObjectMetadata);
        a transform that does not apply to one object sends it as it is, as the real
        server's ``watchEmbeddedEncoder`` does."""
        obj = self.api.present(t.rt, obj, t.version)
        if out.transform == "Table" and kind != "BOOKMARK":
            return self._table(request, t, out, [obj],
                               obj["metadata"].get("resourceVersion", ""))
        if out.transform == "PartialObjectMetadata":
            return _partial(obj, out)
        return obj

    # -- subresources handled here ------------------------------------------------

    async def _scale(self, request: web.Request, t: Target, out: Output) -> web.Response:
        api = self.api
        ns, name = t.namespace or "", t.name or ""
        obj = api.get(t.rt, ns, name)
        if request.method in ("PUT", "PATCH"):
            body = await _body(request)
            scale = _scale_doc(obj)
            if request.method == "PUT":
                new_scale = body
            else:
                from .patch import apply_json_patch, apply_merge_patch

                if request.content_type == JSON_PATCH:
                    new_scale = apply_json_patch(scale, body)
                elif request.content_type in (MERGE_PATCH, STRATEGIC_PATCH):
                    new_scale = apply_merge_patch(scale, body)
                else:
                    raise errors.unsupported_media_type(
                        f"unsupported patch type {request.content_type}")
            replicas = (new_scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid("Scale", "autoscaling", name, [{
                    "field": "spec.replicas", "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {replicas!r}: must be a non-negative integer"}])
            obj = api.patch(t.rt, t.rt.versions[0], ns, name, MERGE_PATCH,
                            {"spec": {"replicas": replicas}})
        return _respond(out, _scale_doc(obj))

    def _bind(self, t: Target, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        target = (body or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid("Binding", "", name, [{"field": "target.name",
                                 "reason": "FieldValueRequired", "message": "Required value"}])
        pod = self.api.get(t.rt, ns, name)
        if pod.get("spec", {}).get("nodeName"):
            raise errors.conflict("pods", "", name,
                                  f"pod {name} is already assigned to node "
                                  f"\"{pod['spec']['nodeName']}\"")
        return self.api.hooks.bind_pod(pod, node)


def _partial(obj: dict[str, Any], out: Output) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": out.transform_api_version,
            "metadata": obj.get("metadata", {})}


def _not_acceptable(message: str) -> errors.ApiError:
    return errors.ApiError(406, "NotAcceptable", message)


def _scale_doc(obj: dict[str, Any]) -> dict[str, Any]:
    sel = (obj.get("spec") or {}).get("selector") or {}
    match = sel.get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid",
                                                      "resourceVersion", "creationTimestamp")
                     if k in obj["metadata"]},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": ",".join(f"{k}={v}" for k, v in sorted(match.items()))},
    }


def _write_opts(q: Any, kind: str, headers: Any) -> WriteOptions:
    """Create/Update/PatchOptions from the query; a bad value is the 422 the real
    server's ``ValidateCreateOptions`` (and its siblings) give."""
    validation = q.get("fieldValidation", "")
    dry = q.getall("dryRun", [])
    causes = []
    if [d for d in dry if d != "All"]:
        causes.append({"field": "dryRun", "reason": "FieldValueNotSupported",
                       "message": f"Unsupported value: {orjson.dumps(dry).decode()}: "
                                  'supported values: "All"'})
    if validation not in ("", "Strict", "Warn", "Ignore"):
        causes.append({"field": "fieldValidation", "reason": "FieldValueNotSupported",
                       "message": f'Unsupported value: "{validation}": supported values: "", '
                                  '"Ignore", "Strict", "Warn"'})
    if causes:
        raise errors.invalid(kind, "meta.k8s.io", "", causes)
    force = q.get("force")
    if force is not None and force.lower() not in ("true", "false", "1", "0", "t", "f"):
        raise errors.bad_request(f'force: invalid value "{force}": use true or false')
    return WriteOptions(dry_run=bool(dry), strict=validation == "Strict",
                        field_manager=q.get("fieldManager", ""),
                        user_agent=headers.get("User-Agent", ""),
                        force=None if force is None else force.lower() in ("true", "1", "t"))


def _selectors(q: Any, rt: ResourceType) -> tuple[Any, Any]:
    try:
        labels = parse_label_selector(q["labelSelector"]) if q.get("labelSelector") else None
        fields = parse_field_selector(q["fieldSelector"]) if q.get("fieldSelector") else None
        if fields is not None:
            # As the real server: only the field labels a kind supports.
            check_field_selector(fields, "" if rt.custom else rt.kind)
    except SelectorError as exc:
        raise errors.bad_request(str(exc)) from None
    return labels, fields


def _page(items: list[dict[str, Any]], q: Any) -> tuple[list[dict[str, Any]], str | None]:
    """limit/continue paging.  The token names the last key returned; the next page is
    read from the current state (the real server reads a snapshot; see README)."""
    import base64

    start = 0
    token = q.get("continue")
    if token:
        try:
            after = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        except Exception:
            raise errors.bad_request("continue: invalid token") from None
        keys = [(o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in items]
        start = next((i for i, k in enumerate(keys) if list(k) > after), len(items))
    try:
        limit = int(q.get("limit") or 0)
    except ValueError:
        raise errors.bad_request("limit must be an integer") from None
    if limit <= 0 or start + limit >= len(items):
        return items[start:], None
    page = items[start:start + limit]
    last = page[-1]["metadata"]
    cont = base64.urlsafe_b64encode(
        orjson.dumps([last.get("namespace", ""), last["name"]])).decode()
    return page, cont


APPLY_CBOR = "application/apply-patch+cbor"


class _JsonLikeYamlLoader(yaml.SafeLoader):
    """YAML as the real server reads it (sigs.k8s.io/yaml: YAML to JSON): timestamps
    stay strings, since a JSON object has no date type."""


_JsonLikeYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


async def _body(request: web.Request, *, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise errors.bad_request("the request body is empty")
    ctype = request.content_type
    if ctype == APPLY_CBOR:
        raise errors.unsupported_media_type(
            "the local cluster accepts apply patches as YAML or JSON "
            "(application/apply-patch+yaml), not CBOR")
    if ctype == protobuf.MEDIA_TYPE:
        try:
            return protobuf.decode(raw)
        except protobuf.UnsupportedKind as exc:
            raise errors.unsupported_media_type(str(exc)) from None
        except protobuf.ProtobufError as exc:
            raise errors.bad_request(f"the protobuf request body cannot be read: {exc}"
                                     ) from None
    try:
        doc = yaml.load(raw, Loader=_JsonLikeYamlLoader) if "yaml" in ctype else orjson.loads(raw)
    except (orjson.JSONDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise errors.bad_request(f"the request body is not valid "
                                 f"{'YAML' if 'yaml' in ctype else 'JSON'}: {exc}") from None
    depth = nesting_depth(doc)
    if depth > MAX_NESTING:
        raise errors.bad_request(
            f"the request body nests {depth} levels deep; the local cluster accepts at most "
            f"{MAX_NESTING} (a real API server decodes up to 10000): flatten the object")
    return doc


MAX_NESTING = 128
"""Objects and arrays within one another that a request body may have.  The server
works on objects recursively (validation, pruning, copies, encoding), and Python's
recursion limit is reached a little beyond 200; objects of every kind the harness
meets, CRD schemas included, stay far below 128."""


def nesting_depth(doc: Any) -> int:
    """How many objects and arrays deep ``doc`` goes (a scalar is 0), without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return deepest
