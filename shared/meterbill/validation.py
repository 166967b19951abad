"""Turning pydantic's errors into messages that name the field a client must fix."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from meterbill.errors import ValidationFailed

__all__ = ["error_details", "validation_failed"]

# Union and discriminator branches that pydantic inserts into error locations: they are types,
# not fields, and a client would not know what to do with them.
_BRANCH_NAMES = {
    "bool",
    "int",
    "str",
    "constrained-str",
    "decimal",
    "float",
    "PACKAGE",
    "PER_UNIT",
    "FLAT_FEE",
}


def error_details(exc: ValidationError, prefix: str = "") -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        field = prefix + _field_path(error["loc"])
        if field in seen:
            continue
        seen.add(field)
        details.append({"field": field.rstrip(".") or "body", "message": _message(error)})
    return details


def validation_failed(exc: ValidationError, prefix: str = "") -> ValidationFailed:
    details = error_details(exc, prefix)
    first = details[0]
    return ValidationFailed(f"{first['field']}: {first['message']}", details)


def _field_path(location: tuple[int | str, ...]) -> str:
    parts = [
        str(part)
        for part in location
        if not (isinstance(part, str) and (part in _BRANCH_NAMES or "[" in part))
    ]
    return ".".join(parts)


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    if kind in {"bool_type", "int_type", "string_type", "decimal_type"} and len(error["loc"]) > 1:
        return "must be a string, a number or a boolean"
    return message[0].lower() + message[1:] if message else message
