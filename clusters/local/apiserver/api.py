"""The API's semantics, independent of HTTP: what create, get, list, update, patch,
delete and watch mean for any resource.

The HTTP layer (``http.py``) only parses requests into these calls and renders
their results; the in-process controllers call them directly, so an object a
controller writes is defaulted, validated and versioned exactly like one kubectl
sends.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from . import apply, errors, eventsv1, kinds, schema
from .applyschema import shape_for
from .listoptions import ListOptions
from .meta import now, random_suffix
from .patch import (
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from .resources import Registry, ResourceType
from .selectors import FieldSelector, LabelSelector
from .store import DELETED, Event, Store, TooOld

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH)
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# How long a watch-list from a resourceVersion newer than the store's waits for it,
# as the watch cache's ``waitUntilFreshAndBlock`` does (3 s, ``blockTimeout``).
TOO_LARGE_WAIT = 3.0
EVENTS_STORE = ("", "events")
# The manager of writes from this control plane's own controllers, which call the Api
# in-process (the real ones identify as kube-controller-manager).
IN_PROCESS_MANAGER = "kube-controller-manager"


@dataclass
class WriteOptions:
    dry_run: bool = False
    # fieldValidation=Strict: unknown fields are an error instead of being dropped.
    strict: bool = False
    warnings: list[str] = field(default_factory=list)
    # Who writes, for managedFields: ?fieldManager=, else the User-Agent's first word.
    # In-process callers leave both unset and write as IN_PROCESS_MANAGER.
    field_manager: str = ""
    user_agent: str | None = None
    # The authenticated user who writes (handlers set it), for the reviews that answer
    # about the requester (SelfSubjectReview).
    user: dict[str, Any] | None = None
    # ?force= of an apply patch (None: not given).
    force: bool | None = None
    # Set when an apply patch created the object (the answer is then 201).
    created: bool = False

    def manager(self) -> str:
        if self.field_manager:
            return self.field_manager
        if self.user_agent is None:
            return IN_PROCESS_MANAGER
        return apply.manager_from_user_agent(self.user_agent)

    def check(self, options_kind: str) -> None:
        """The checks the real server makes of Create/Update/PatchOptions."""
        problem = apply.field_manager_problem(self.field_manager)
        if problem is not None:
            raise errors.invalid(options_kind, "meta.k8s.io", "", [problem])


@dataclass
class DeleteOptions:
    propagation: str | None = None  # Background | Foreground | Orphan
    grace_period: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False

    @classmethod
    def from_body(cls, body: dict[str, Any] | None, query: dict[str, str]) -> DeleteOptions:
        body = body or {}
        pre = body.get("preconditions") or {}
        propagation = body.get("propagationPolicy") or query.get("propagationPolicy")
        if propagation is None and body.get("orphanDependents") is True:
            propagation = "Orphan"
        grace = body.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        dry = body.get("dryRun") or query.get("dryRun") or []
        dry = [dry] if isinstance(dry, str) else dry
        # apimachinery's ValidateDeleteOptions: a 422 on DeleteOptions.meta.k8s.io
        causes = []
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            causes.append(_cause(
                "propagationPolicy", "FieldValueNotSupported",
                f'Unsupported value: "{propagation}": supported values: "Foreground", '
                '"Background", "Orphan", "nil"'))
        if not isinstance(dry, list) or any(d != "All" for d in dry):
            causes.append(_cause("dryRun", "FieldValueNotSupported",
                                 f'Unsupported value: {json.dumps(dry)}: supported values: '
                                 '"All"'))
        if causes:
            raise errors.invalid("DeleteOptions", "meta.k8s.io", "", causes)
        try:
            grace_int = int(grace) if grace is not None else None
        except (TypeError, ValueError):
            raise errors.bad_request(f"gracePeriodSeconds: not an integer: {grace!r}") from None
        return cls(propagation, grace_int, pre.get("uid"), pre.get("resourceVersion"), bool(dry))


class Api:
    """Create/read/update/delete/watch over the store, for every resource type."""

    def __init__(self, store: Store, registry: Registry, hooks: kinds.KindHooks) -> None:
        self.store = store
        self.registry = registry
        self.hooks = hooks
        hooks.bind(self)

    # -- lookups ----------------------------------------------------------------

    def rt(self, group: str, plural: str) -> ResourceType:
        rt = self.registry.get(group, plural)
        if rt is None:
            raise errors.not_found(plural, group, "")
        return rt

    def present(self, rt: ResourceType, obj: dict[str, Any], version: str) -> dict[str, Any]:
        """The object as seen through ``version`` (custom resources: only apiVersion differs;
        events.k8s.io Events: converted from the stored core form)."""
        if rt.stored_as == EVENTS_STORE and rt.group == "events.k8s.io":
            return eventsv1.to_events_v1(obj)
        api_version = rt.api_version(version)
        if obj.get("apiVersion") == api_version:
            return obj
        out = dict(obj)
        out["apiVersion"] = api_version
        return out

    def get(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rt.store_key, ns if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def find(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any] | None:
        return self.store.get(rt.store_key, ns if rt.namespaced else "", name)

    def list(
        self,
        rt: ResourceType,
        ns: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Matching objects sorted by namespace and name, and the list's resourceVersion."""
        out = [
            obj
            for obj in self.store.items(rt.store_key, ns if rt.namespaced else None)
            if _selected(obj, labels, fields)
        ]
        out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return out, self.store.resource_version

    # -- create -----------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        version: str,
        ns: str,
        body: Any,
        opts: WriteOptions | None = None,
    ) -> dict[str, Any]:
        opts = opts or WriteOptions()
        opts.check("CreateOptions")
        obj = self._check_body(rt, version, ns, body)
        if rt.virtual:
            return self.hooks.virtual_create(rt, obj, opts.user)
        return self._create(rt, version, ns, obj, opts, applied=False)

    def _create(self, rt: ResourceType, version: str, ns: str, obj: dict[str, Any],
                opts: WriteOptions, *, applied: bool) -> dict[str, Any]:
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + random_suffix()
            else:
                raise errors.invalid(rt.kind, rt.group, "", [
                    _cause("metadata.name", "FieldValueRequired",
                           "Required value: name or generateName is required")
                ])
        if rt.namespaced:
            self._check_namespace_open(ns)
        if self.store.get(rt.store_key, ns if rt.namespaced else "", meta["name"]) is not None:
            raise errors.already_exists(rt.plural, rt.group, meta["name"])
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        if rt.has_status and not self.hooks.keeps_status_on_create(rt):
            obj.pop("status", None)
        self._validate(rt, version, obj, opts)
        self.hooks.prepare_create(rt, obj, opts)
        self._validate_semantics(rt, obj, None)
        if not applied:
            _set_managed_fields(obj, apply.record_update(
                self._scope(rt, version, None), None, obj, opts.manager()))
        obj = self._stored_form(rt, obj)
        if opts.dry_run:
            self.hooks.undo_create(rt, obj)
            return obj
        stored = self.store.put(rt.store_key, obj)
        self.hooks.after_write(rt, stored, None)
        return stored

    # -- update -----------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        version: str,
        ns: str,
        name: str,
        body: Any,
        opts: WriteOptions | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        opts = opts or WriteOptions()
        opts.check("UpdateOptions")
        obj = self._check_body(rt, version, ns, body)
        if obj["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                f'the name of the object ({obj["metadata"]["name"]}) does not match the name '
                f"on the URL ({name})"
            )
        obj["metadata"]["name"] = name
        old = self.find(rt, ns, name)
        if old is None:
            raise errors.not_found(rt.plural, rt.group, name)
        _check_version(rt, obj, old)
        return self._replace(rt, version, old, obj, opts, subresource)

    def patch(
        self,
        rt: ResourceType,
        version: str,
        ns: str,
        name: str,
        content_type: str,
        patch_body: Any,
        opts: WriteOptions | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        opts = opts or WriteOptions()
        opts.check("PatchOptions")
        if content_type == APPLY_PATCH:
            return self._apply(rt, version, ns, name, patch_body, opts, subresource)
        if opts.force is not None:
            raise errors.invalid("PatchOptions", "meta.k8s.io", "", [_cause(
                "force", "FieldValueForbidden",
                "Forbidden: may not be specified for non-apply patch")])
        old = self.find(rt, ns, name)
        if old is None:
            raise errors.not_found(rt.plural, rt.group, name)
        current = self.present(rt, old, version)
        try:
            if content_type == JSON_PATCH:
                if not isinstance(patch_body, list):
                    raise PatchError("a JSON patch must be a list of operations")
                new = apply_json_patch(current, patch_body)
            elif content_type == MERGE_PATCH:
                new = apply_merge_patch(current, patch_body)
            elif content_type == STRATEGIC_PATCH:
                if rt.custom:
                    raise errors.unsupported_media_type(
                        "strategic merge patch is not supported for custom resources "
                        f"({rt.plural}.{rt.group}); use a merge or JSON patch "
                        "(kubectl patch --type=merge)"
                    )
                if not isinstance(patch_body, dict):
                    raise PatchError("a strategic merge patch must be a JSON object")
                new = apply_strategic_merge_patch(current, patch_body, self.hooks.patch_schema(rt))
            else:
                raise errors.unsupported_media_type(
                    f'the body of the request was in an unknown format - accepted media types '
                    f'include: {", ".join(PATCH_TYPES)}'
                )
        except PatchError as exc:
            raise errors.ApiError(422, "Invalid", f"the patch could not be applied: {exc}",
                                  kind=rt.kind, name=name, group=rt.group) from None
        if not isinstance(new, dict):
            raise errors.ApiError(422, "Invalid", "the patch did not produce an object",
                                  kind=rt.kind, name=name, group=rt.group)
        _object_shape(rt, new)
        _check_version(rt, new, old)
        new["metadata"]["name"] = name
        if rt.namespaced:
            new["metadata"]["namespace"] = ns
        return self._replace(rt, version, old, new, opts, subresource)

    def _apply(self, rt: ResourceType, version: str, ns: str, name: str, body: Any,
               opts: WriteOptions, subresource: str | None) -> dict[str, Any]:
        """Server-side apply: merge ``body`` into the object (creating it if missing)
        with field ownership; see ``apply.py``."""
        if not opts.field_manager:
            raise errors.invalid("PatchOptions", "meta.k8s.io", "", [_cause(
                "fieldManager", "FieldValueRequired",
                "Required value: is required for apply patch")])
        config = self._check_apply_config(rt, version, ns, name, body, opts)
        scope = self._scope(rt, version, subresource)
        force = bool(opts.force)
        old = self.find(rt, ns, name)
        if old is None:
            if subresource:
                raise errors.not_found(rt.plural, rt.group, name)
            if rt.namespaced:
                self._check_namespace_open(ns)
            created = apply.apply(scope, None, config, opts.field_manager, force=force).obj
            created["metadata"]["name"] = name
            opts.created = True
            return self._create(rt, version, ns, created, opts, applied=True)
        new = apply.apply(scope, self.present(rt, old, version), config, opts.field_manager,
                          force=force).obj
        _check_version(rt, new, old)
        new["metadata"]["name"] = name
        if rt.namespaced:
            new["metadata"]["namespace"] = ns
        return self._replace(rt, version, old, new, opts, subresource, applied=True)

    def _check_apply_config(self, rt: ResourceType, version: str, ns: str, name: str,
                            body: Any, opts: WriteOptions) -> dict[str, Any]:
        """An apply configuration is a whole object of the endpoint's kind and version,
        without managedFields; unknown fields follow fieldValidation as anywhere."""
        if not isinstance(body, dict):
            raise errors.bad_request(
                "error decoding YAML: the apply configuration must be an object with "
                f"apiVersion, kind and metadata.name, not {type(body).__name__}")
        want = rt.api_version(version)
        if body.get("apiVersion") != want or body.get("kind") != rt.kind:
            group, _, ver = str(body.get("apiVersion") or "").rpartition("/")
            raise errors.bad_request(
                f"invalid object type: {group}/{ver}, Kind={body.get('kind') or ''} "
                f"(this endpoint takes apiVersion {want}, kind {rt.kind})")
        meta = body.get("metadata")
        if isinstance(meta, dict) and meta.get("managedFields") is not None:
            raise errors.bad_request("metadata.managedFields must be nil")
        config = self._check_body(rt, version, ns, body)
        if config["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                f'the name of the object ({config["metadata"]["name"]}) does not match the '
                f"name on the URL ({name})")
        self._validate(rt, version, config, opts, partial=True)
        return config

    def _scope(self, rt: ResourceType, version: str, subresource: str | None) -> apply.Scope:
        return apply.Scope(shape_for(rt, version), rt.api_version(version), subresource or "",
                           status_subresource=rt.has_status, custom=rt.custom)

    def _replace(
        self,
        rt: ResourceType,
        version: str,
        old: dict[str, Any],
        obj: dict[str, Any],
        opts: WriteOptions,
        subresource: str | None,
        *,
        applied: bool = False,
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        old_meta = old["metadata"]
        # Fields only the server sets survive whatever the client sent.
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation"):
            if k in old_meta:
                meta[k] = old_meta[k]
            else:
                meta.pop(k, None)
        if rt.has_status:
            if subresource == "status":
                # A status write changes status, and of metadata only what the kind's
                # status strategy lets through.
                new = {k: v for k, v in old.items() if k != "status"}
                if "status" in obj:
                    new["status"] = obj["status"]
                new["metadata"] = self.hooks.status_write_metadata(rt, meta, old_meta)
                if applied:  # the apply's own record of who owns what in status
                    _set_managed_fields(new, meta.get("managedFields"))
                obj = new
                meta = new["metadata"]
            else:
                if "status" in old:
                    obj["status"] = old["status"]
                else:
                    obj.pop("status", None)
        self._validate(rt, version, obj, opts, old=old)
        self.hooks.prepare_update(rt, obj, old, opts)
        self._validate_semantics(rt, obj, old)
        if not applied:
            _set_managed_fields(obj, apply.record_update(
                self._scope(rt, version, subresource), self.present(rt, old, version), obj,
                opts.manager()))
        obj = self._stored_form(rt, obj)
        meta = obj["metadata"]
        if _spec_changed(rt, old, obj):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and \
                not self.hooks.waits_for_node(rt, obj):
            # The last finalizer is gone: the object goes now.
            if opts.dry_run:
                return obj
            return self._remove(rt, obj)
        if _same(old, obj):
            return old  # a no-op write keeps the resourceVersion, like the real server
        if opts.dry_run:
            return obj
        stored = self.store.put(rt.store_key, obj)
        self.hooks.after_write(rt, stored, old)
        return stored

    # -- delete -----------------------------------------------------------------

    def delete(
        self, rt: ResourceType, ns: str, name: str, opts: DeleteOptions | None = None
    ) -> dict[str, Any]:
        opts = opts or DeleteOptions()
        obj = self.find(rt, ns, name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        meta = obj["metadata"]
        if opts.uid and opts.uid != meta["uid"]:
            raise errors.conflict(rt.plural, rt.group, name,
                                  f"Precondition failed: UID in precondition: {opts.uid}, "
                                  f"UID in object meta: {meta['uid']}")
        if opts.resource_version and opts.resource_version != meta["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name,
                                  "Precondition failed: ResourceVersion in precondition: "
                                  f"{opts.resource_version}, ResourceVersion in object meta: "
                                  f"{meta['resourceVersion']}")
        self.hooks.check_delete(rt, obj)
        propagation = opts.propagation or "Background"
        if propagation == "Orphan" and not opts.dry_run:
            self._orphan_dependents(meta["uid"])
        finalizers = list(meta.get("finalizers") or ())
        if propagation == "Foreground" and self.store.dependents(meta["uid"]) and \
                "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        graceful = self.hooks.graceful_seconds(rt, obj, opts.grace_period)
        if finalizers or graceful is not None or self.hooks.deletes_in_stages(rt):
            already = meta.get("deletionTimestamp") and \
                finalizers == list(meta.get("finalizers") or ())
            shorter = graceful is not None and \
                graceful < int(meta.get("deletionGracePeriodSeconds", 0))
            if already and not shorter:
                return obj  # already being deleted
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = meta.get("deletionTimestamp") or now()
            new["metadata"]["deletionGracePeriodSeconds"] = graceful or 0
            if finalizers:
                new["metadata"]["finalizers"] = finalizers
            self.hooks.mark_deleting(rt, new)
            if opts.dry_run:
                return new  # what a real delete would have answered, nothing stored
            stored = self.store.put(rt.store_key, new)
            self.hooks.after_write(rt, stored, obj)
            return stored
        if opts.dry_run:
            return obj
        return self._remove(rt, obj)

    def delete_collection(
        self, rt: ResourceType, ns: str | None, labels: LabelSelector | None,
        fields: FieldSelector | None, opts: DeleteOptions | None = None,
    ) -> list[dict[str, Any]]:
        items, _ = self.list(rt, ns, labels, fields)
        out = []
        for obj in items:
            try:
                out.append(self.delete(rt, obj["metadata"].get("namespace", ""),
                                       obj["metadata"]["name"], opts))
            except errors.ApiError as exc:
                if exc.code != 404:
                    raise
        return out

    def force_remove(self, rt: ResourceType, ns: str, name: str) -> dict[str, Any] | None:
        """Remove now, whatever finalizers or grace say (a node confirming a pod is gone)."""
        obj = self.find(rt, ns, name)
        return self._remove(rt, obj) if obj is not None else None

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        gone = self.store.remove(rt.store_key, meta.get("namespace", ""), meta["name"])
        if gone is None:
            raise errors.not_found(rt.plural, rt.group, meta["name"])
        self.hooks.after_delete(rt, gone)
        return gone

    def _orphan_dependents(self, owner_uid: str) -> None:
        for key, (dns, dname) in self.store.dependents(owner_uid):
            dep = self.store.get(key, dns, dname)
            if dep is None:
                continue
            new = copy.deepcopy(dep)
            refs = [r for r in new["metadata"].get("ownerReferences") or ()
                    if r.get("uid") != owner_uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self.store.put(key, new)

    # -- watch ------------------------------------------------------------------

    def watch(
        self,
        rt: ResourceType,
        ns: str | None,
        opts: ListOptions,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) pairs, in resourceVersion order, as the real server's watch
        cache serves them (k8s.io/apiserver ``pkg/storage/cacher``: ``Watch``,
        ``watchCache.getAllEventsSinceLocked``, ``cacheWatcher.convertToWatchEvent``):

        - ``sendInitialEvents`` not given: with resourceVersion "" or "0", the current
          state as ADDED events first; with a version N, the changes after N (410 Gone
          once the log no longer reaches back to N).
        - ``sendInitialEvents=true``: the current state as ADDED events whatever the
          version, and, when ``allowWatchBookmarks`` too (a watch-list), a BOOKMARK
          annotated ``k8s.io/initial-events-end: "true"`` carrying the state's
          resourceVersion; a version newer than the store's waits up to
          ``TOO_LARGE_WAIT`` seconds for it, then ends in the ERROR the real server
          sends ("Too large resource version", cause ResourceVersionTooLarge).
        - ``sendInitialEvents=false``: no initial state; changes after N, or from now
          for "" and "0".

        An object that stops matching the selectors is sent as DELETED (its last
        matching content with the new version) and one that starts matching as ADDED,
        so a watcher's view stays equal to a fresh list.  Errors a real server returns
        before streaming (410 for a resume too old) are raised here, before anything
        is streamed.
        """
        rv_text = opts.resource_version
        since: int | None = None
        if rv_text not in ("", "0"):
            try:
                since = int(rv_text)
            except ValueError:
                raise errors.bad_request(
                    f'invalid resourceVersion "{rv_text}": not a number') from None
        initial_state = opts.send_initial_events is True or (
            opts.send_initial_events is None and since is None)
        store = self.store

        def too_old(rv: int) -> errors.ApiError:
            return errors.gone(f"too old resource version: {rv} ({store.resource_version})")

        # 410 before anything is streamed, when it is already known
        if not initial_state and since is not None and not store.reaches_back_to(since):
            raise too_old(since)
        scope = ns if rt.namespaced else None
        # Without initial state, the watch starts from the version given, or else from
        # the one the server had when the request came in.
        origin = since if since is not None else store.resource_version

        async def stream() -> AsyncIterator[tuple[str, dict[str, Any]]]:
            if initial_state and since is not None and \
                    not await store.wait_for_version(since, TOO_LARGE_WAIT):
                yield "ERROR", errors.too_large_resource_version(
                    since, store.resource_version).status()
                return
            # Reading the state (or the backlog) and subscribing happen in one
            # synchronous step, so no write can fall between the two.
            first: list[tuple[str, dict[str, Any]]] = []
            if initial_state:
                items, rv = self.list(rt, ns, labels, fields)
                first = [("ADDED", obj) for obj in items]
                if opts.watch_list:
                    first.append(("BOOKMARK", _initial_events_end(rt, rv)))
                after = rv
            else:
                # The backlog is read here, not when the request came in: the caller
                # awaits (sending the response's headers) before the first step, and
                # a write in that gap would be in neither an earlier backlog nor the
                # subscription made below.
                after = origin
                try:
                    backlog = store.events_since(origin, rt.store_key)
                except TooOld:
                    yield "ERROR", too_old(origin).status()
                    return
                for ev in backlog:
                    if scope and ev.obj["metadata"].get("namespace") != scope:
                        continue
                    out = _filtered(ev, labels, fields)
                    if out is not None:
                        first.append(out)
                if backlog:
                    after = max(after, backlog[-1].rv)
            sub = store.subscribe(rt.store_key, scope)
            try:
                for item in first:
                    yield item
                while True:
                    ev = await sub.queue.get()
                    if ev is None:
                        return
                    if ev.rv <= after:
                        continue  # a watch from a future version starts after it
                    out = _filtered(ev, labels, fields)
                    if out is not None:
                        yield out
            finally:
                store.unsubscribe(sub)

        return stream()

    def _stored_form(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as the store keeps it: in the storage version, and for a second
        view (events.k8s.io) in the form of the resource that owns the store."""
        if rt.stored_as == EVENTS_STORE and rt.group == "events.k8s.io":
            return eventsv1.to_core(obj)
        obj["apiVersion"] = rt.api_version(rt.versions[0])
        return obj

    # -- checks -----------------------------------------------------------------

    def _check_body(self, rt: ResourceType, version: str, ns: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"the body of the request must be a JSON object, got {type(body).__name__}"
            )
        obj = copy.deepcopy(body)
        # Like the real server, the endpoint supplies a missing kind and apiVersion
        # (the Python client omits them when a model was built without them).
        kind = obj.get("kind") or rt.kind
        api_version = obj.get("apiVersion")
        obj["kind"] = kind
        if kind != rt.kind:
            raise errors.bad_request(
                f'the kind of the object ("{kind}") does not match the resource {rt.plural} '
                f'(kind "{rt.kind}")'
            )
        if api_version and api_version != rt.api_version(version):
            raise errors.bad_request(
                f'the API version in the data ({api_version}) does not match the expected API '
                f"version ({rt.api_version(version)})"
            )
        meta = _object_shape(rt, obj)
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != ns:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        obj["apiVersion"] = rt.api_version(version)
        return obj

    def _check_namespace_open(self, ns: str) -> None:
        nso = self.store.get(("", "namespaces"), "", ns)
        if nso is None:
            raise errors.not_found("namespaces", "", ns)
        if nso["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f"unable to create new content in namespace {ns} because it is being terminated"
            )

    def _validate(self, rt: ResourceType, version: str, obj: dict[str, Any],
                  opts: WriteOptions, *, partial: bool = False,
                  old: dict[str, Any] | None = None) -> None:
        """Types and unknown fields, then a custom resource's CEL rules (``old``: the
        stored object, for transition rules); a ``partial`` object (an apply
        configuration) is checked for unknown fields only, the rest waits for the
        merged object."""
        name = obj["metadata"].get("name", "")
        if rt.custom:
            crd_schema = rt.crd_schema(version)
            if crd_schema is None:
                return
            if not partial:  # the schema's defaults, before the checks that read them
                schema.default_crd(obj, crd_schema)
            issues = _only_unknown(schema.validate_crd_schema(obj, crd_schema,
                                                              strict=opts.strict), partial)
            if old is not None:
                issues = schema.ratchet(issues, obj, old)
            if not issues and not opts.strict:
                pruned, dropped = schema.prune_crd(obj, crd_schema)
                if dropped:
                    obj.clear()
                    obj.update(pruned)
                    opts.warnings.extend(f'unknown field "{p}"' for p in dropped)
        else:
            model = schema.kind_schema(rt.group, version, rt.kind)
            if model is None:
                return
            issues = _only_unknown(schema.validate(obj, model, strict=opts.strict), partial)
            if not issues and not opts.strict:
                pruned, dropped = schema.prune_unknown(obj, model)
                if dropped:
                    obj.clear()
                    obj.update(pruned)
                    opts.warnings.extend(f'unknown field "{p}"' for p in dropped)
        if not issues and not partial and rt.custom:
            from . import celrules  # CEL loads at the first custom resource, not at start

            verdict = celrules.check(obj, rt.crd_schema(version), old)
            causes = verdict.causes if old is None else [  # ratcheted too (KEP-4008)
                c for c in verdict.causes if not schema.unchanged(c.get("field", ""), obj, old)]
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
            opts.warnings.extend(f"CEL rule not evaluated by the local cluster (it calls a "
                                 f"function its CEL library lacks): {s}"
                                 for s in verdict.skipped)
        if issues:
            if opts.strict and all(schema.is_unknown_field(i) for i in issues):
                raise errors.bad_request(
                    f"{rt.kind} in version \"{version}\" cannot be handled as a {rt.kind}: "
                    "strict decoding error: " + ", ".join(i.message for i in issues)
                )
            raise errors.invalid(rt.kind, rt.group, name, [
                _cause(i.field, i.reason, i.message) for i in issues
            ])

    def _validate_semantics(self, rt: ResourceType, obj: dict[str, Any],
                            old: dict[str, Any] | None) -> None:
        causes = self.hooks.validate(rt, obj, old)
        name_problem = self.hooks.name_problem(rt, obj["metadata"]["name"])
        if name_problem:
            causes.insert(0, _cause("metadata.name", "FieldValueInvalid",
                                    f'Invalid value: "{obj["metadata"]["name"]}": {name_problem}'))
        if causes:
            raise errors.invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), causes)


def _object_shape(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """Make ``obj``'s top level what the server's own code may rely on, and return its
    metadata.  A built-in kind's ``null`` field is absent, as decoding JSON into the real
    server's Go structs makes it (``spec: null`` is an empty spec, then validated as
    one); ``metadata``, ``spec`` and ``status`` that are not objects are refused with
    the field named, before any defaulting reads them."""
    if not rt.custom:
        for key in [k for k, v in obj.items() if v is None]:
            del obj[key]
    if obj.get("metadata") is None:
        obj["metadata"] = {}
    model = None if rt.custom else schema.kind_schema(rt.group, rt.versions[0], rt.kind)
    wrong = [key for key in ("metadata", "spec", "status")
             if key in obj and not isinstance(obj[key], dict)
             and (key == "metadata" or (model is not None and key in model.fields))]
    causes = [_cause(key, "FieldValueInvalid", f'Invalid value: "{schema._json_type(obj[key])}": '
                     f"{key} in body must be of type object") for key in wrong]
    meta = obj["metadata"]
    if isinstance(meta, dict):  # the fields the server reads before validating
        causes += [_cause(f"metadata.{key}", "FieldValueInvalid",
                          f'Invalid value: "{schema._json_type(meta[key])}": metadata.{key} in '
                          "body must be of type string")
                   for key in ("name", "generateName", "namespace", "resourceVersion", "uid")
                   if meta.get(key) is not None and not isinstance(meta[key], str)]
    if causes:
        raise errors.invalid(rt.kind, rt.group, "", causes)
    return meta


def _check_version(rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
    """Optimistic concurrency: a write naming a resourceVersion must name the current one."""
    want = new["metadata"].get("resourceVersion")
    if want and want != old["metadata"]["resourceVersion"]:
        raise errors.conflict(
            rt.plural, rt.group, old["metadata"]["name"],
            "the object has been modified; please apply your changes to the latest "
            "version and try again",
        )


def _cause(field: str, reason: str, message: str) -> dict[str, str]:
    return {"field": field, "reason": reason, "message": message}


def _only_unknown(issues: list[schema.FieldIssue], partial: bool) -> list[schema.FieldIssue]:
    return [i for i in issues if schema.is_unknown_field(i)] if partial else issues


def _set_managed_fields(obj: dict[str, Any], managed: list[dict[str, Any]] | None) -> None:
    if managed is None:
        obj["metadata"].pop("managedFields", None)
    else:
        obj["metadata"]["managedFields"] = managed


def _selected(obj: dict[str, Any], labels: LabelSelector | None,
              fields: FieldSelector | None) -> bool:
    if labels is not None and not labels.matches(obj["metadata"].get("labels") or {}):
        return False
    return fields is None or fields.matches(obj)


def _filtered(ev: Event, labels: LabelSelector | None,
              fields: FieldSelector | None) -> tuple[str, dict[str, Any]] | None:
    if labels is None and fields is None:
        return ev.type, ev.obj
    now_in = _selected(ev.obj, labels, fields)
    was_in = ev.old is not None and _selected(ev.old, labels, fields)
    if ev.type == DELETED:
        return (DELETED, ev.obj) if was_in or now_in else None
    if now_in and not was_in:
        return "ADDED", ev.obj
    if was_in and not now_in:
        # The real cacheWatcher sends the object as it last matched, with the
        # event's resourceVersion (``convertToWatchEvent``).
        assert ev.old is not None
        return DELETED, {**ev.old, "metadata": {**ev.old["metadata"],
                                                "resourceVersion": str(ev.rv)}}
    if now_in:
        return ev.type, ev.obj
    return None


def _initial_events_end(rt: ResourceType, rv: int) -> dict[str, Any]:
    """The bookmark that closes a watch-list's initial events: an empty object of the
    resource's kind with the state's resourceVersion (the cacher's
    ``setInitialEventsEndBookmarkIfRequested``; the annotation is
    ``metav1.InitialEventsAnnotationKey``)."""
    return {"apiVersion": rt.api_version(rt.versions[0]), "kind": rt.kind,
            "metadata": {"resourceVersion": str(rv),
                         "annotations": {INITIAL_EVENTS_END: "true"}}}


def _strip(obj: dict[str, Any], status: bool) -> dict[str, Any]:
    return {k: v for k, v in obj.items()
            if k not in ("metadata", "apiVersion", "kind") and (status or k != "status")}


def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    # With a status subresource, status writes never bump generation; without one
    # any change outside metadata does, as on the real server.
    return _strip(old, not rt.has_status) != _strip(new, not rt.has_status)


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    a = dict(old)
    b = dict(new)
    a["metadata"] = {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}
    b["metadata"] = {k: v for k, v in new["metadata"].items() if k != "resourceVersion"}
    return a == b
