"""Domain errors. Raised deep in the domain, mapped to HTTP in exactly one place (`http`)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExists",
    "Conflict",
    "MeterbillError",
    "NotFound",
    "StorageUnavailable",
    "Unauthorized",
    "ValidationFailed",
]


class MeterbillError(Exception):
    """Base class: a stable machine code, a sentence for humans and optional details."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "http_status_code": self.http_status,
            "details": self.details,
        }


class ValidationFailed(MeterbillError):
    code = "validation_error"
    http_status = 400


class Unauthorized(MeterbillError):
    code = "unauthorized"
    http_status = 401


class NotFound(MeterbillError):
    code = "not_found"
    http_status = 404


class AlreadyExists(MeterbillError):
    code = "already_exists"
    http_status = 409


class Conflict(MeterbillError):
    code = "conflict"
    http_status = 409


class StorageUnavailable(MeterbillError):
    """The table could not be read or written; the caller may retry the same request safely."""

    code = "storage_unavailable"
    http_status = 503
