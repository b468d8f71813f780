"""The query parameters of a list or watch, read and checked as the real server does.

client-go's reflector opens every informer with a *watch-list*:
``?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&
allowWatchBookmarks=true`` (client-go ``tools/cache/reflector.go`` ``watchList``), and
falls back to a plain list only when that request fails.  The rules a request must
follow are apimachinery's ``pkg/apis/meta/internalversion/validation``
``ValidateListOptions``; a violation is a 422 ``Invalid`` on kind
``ListOptions.meta.k8s.io``, as the real server's ``listOpts``
(k8s.io/apiserver ``pkg/endpoints/handlers/get.go``) answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import errors

NOT_OLDER_THAN = "NotOlderThan"
EXACT = "Exact"

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class ListOptions:
    resource_version: str = ""
    resource_version_match: str = ""
    # None: not given (the legacy watch semantics); True/False: given.
    send_initial_events: bool | None = None
    allow_watch_bookmarks: bool = False
    watch: bool = False
    continue_token: str = ""

    @property
    def watch_list(self) -> bool:
        """A streaming list: initial events closed by the ``k8s.io/initial-events-end``
        bookmark (the cacher's ``isListWatchRequest``)."""
        return bool(self.send_initial_events) and self.allow_watch_bookmarks


def _bool(query: Mapping[str, str], name: str) -> bool | None:
    """A boolean query parameter as Go's ``strconv.ParseBool`` reads it."""
    value = query.get(name)
    if value is None or value == "":
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise errors.bad_request(f'{name}: invalid value "{value}": must be true or false')


def _cause(field: str, reason: str, message: str) -> dict[str, str]:
    return {"field": field, "reason": reason, "message": message}


def _forbidden(field: str, why: str) -> dict[str, str]:
    return _cause(field, "FieldValueForbidden", f"Forbidden: {why}")


def _not_supported(field: str, value: str, supported: tuple[str, ...]) -> dict[str, str]:
    values = ", ".join(f'"{s}"' for s in supported)
    return _cause(field, "FieldValueNotSupported",
                  f'Unsupported value: "{value}": supported values: {values}')


def parse(query: Mapping[str, str]) -> ListOptions:
    """The options of a list or watch request; 400 for a value that does not parse,
    422 for a combination the real server refuses."""
    opts = ListOptions(
        resource_version=query.get("resourceVersion") or "",
        resource_version_match=query.get("resourceVersionMatch") or "",
        send_initial_events=_bool(query, "sendInitialEvents"),
        allow_watch_bookmarks=bool(_bool(query, "allowWatchBookmarks")),
        watch=bool(_bool(query, "watch")),
        continue_token=query.get("continue") or "",
    )
    causes = _watch_causes(opts) if opts.watch else _list_causes(opts)
    if causes:
        raise errors.invalid("ListOptions", "meta.k8s.io", "", causes)
    return opts


def _watch_causes(opts: ListOptions) -> list[dict[str, str]]:
    causes = []
    match = opts.resource_version_match
    if opts.send_initial_events is not None and match != NOT_OLDER_THAN:
        causes.append(_forbidden("resourceVersionMatch", "sendInitialEvents requires setting "
                                 f"resourceVersionMatch to {NOT_OLDER_THAN}"))
    if match:
        if opts.send_initial_events is None:
            causes.append(_forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                     "for watch unless sendInitialEvents is provided"))
        if match != NOT_OLDER_THAN:
            causes.append(_not_supported("resourceVersionMatch", match, (NOT_OLDER_THAN,)))
        if opts.continue_token:
            causes.append(_forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                     "when continue is provided"))
    return causes


def _list_causes(opts: ListOptions) -> list[dict[str, str]]:
    causes = []
    match = opts.resource_version_match
    if match:
        if not opts.resource_version:
            causes.append(_forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                     "unless resourceVersion is provided"))
        if opts.continue_token:
            causes.append(_forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden "
                                     "when continue is provided"))
        if match not in (EXACT, NOT_OLDER_THAN):
            causes.append(_not_supported("resourceVersionMatch", match,
                                         (EXACT, NOT_OLDER_THAN, "")))
        if match == EXACT and opts.resource_version == "0":
            causes.append(_forbidden("resourceVersionMatch", 'resourceVersionMatch "exact" is '
                                     'forbidden for resourceVersion "0"'))
    if opts.send_initial_events is not None:
        causes.append(_forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    return causes
