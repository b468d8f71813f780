"""Kubernetes ``Status`` errors.

Clients (kubectl, the official Python client) read ``reason``, ``code`` and
``details.causes`` of a failure Status to print a useful message, so every error the
server returns is one of these, never a bare text body or a traceback.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error that becomes a ``Status`` response."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        kind: str | None = None,
        name: str | None = None,
        group: str | None = None,
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.kind = kind
        self.name = name
        self.group = group
        self.causes = causes or []
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


def _what(kind_plural: str, group: str) -> str:
    return f"{kind_plural}.{group}" if group else kind_plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_what(plural, group)} "{name}" not found',
                    kind=plural, name=name, group=group)


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{_what(plural, group)} "{name}" already exists',
                    kind=plural, name=name, group=group)


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_what(plural, group)} "{name}": {why}',
        kind=plural, name=name, group=group,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 Invalid, with one cause per field at fault, worded like the real server."""
    summary = "; ".join(
        f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
    )
    return ApiError(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {summary}' if group
        else f'{kind} "{name}" is invalid: {summary}',
        kind=kind, name=name, group=group, causes=causes,
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def too_large_resource_version(wanted: int, current: int) -> ApiError:
    """A watch-list from a resourceVersion the store has not reached, worded as the
    real server's ``storage.NewTooLargeResourceVersionError``; client-go's reflector
    recognises the cause and starts again from the latest state."""
    return ApiError(504, "Timeout",
                    f"Timeout: Too large resource version: {wanted}, current: {current}",
                    causes=[{"reason": "ResourceVersionTooLarge",
                             "message": "Too large resource version"}],
                    retry_after=1)
