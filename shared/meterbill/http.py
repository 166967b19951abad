"""What every HTTP function shares: the resolver, the error mapping, tenant and body parsing.

Domain errors are turned into responses here and nowhere else:

    {"code": "...", "message": "<names the field>", "http_status_code": N, "details": [...]}
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from pydantic import BaseModel, ValidationError

from meterbill.errors import MeterbillError, Unauthorized, ValidationFailed
from meterbill.periods import format_instant
from meterbill.validation import validation_failed

__all__ = [
    "MAX_BODY_BYTES",
    "PayloadTooLarge",
    "create_resolver",
    "dumps",
    "json_body",
    "parse",
    "query_param",
    "respond",
    "tenant_id",
]

MAX_BODY_BYTES = 1024 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)

logger = Logger(service="meterbill")


class PayloadTooLarge(MeterbillError):
    code = "payload_too_large"
    http_status = 413


class InternalError(MeterbillError):
    code = "internal_error"
    http_status = 500


def create_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(serializer=dumps)

    @app.exception_handler(MeterbillError)  # type: ignore[untyped-decorator]
    def _domain_error(exc: MeterbillError) -> Response[str]:
        if exc.http_status >= 500:
            logger.error("request failed", extra={"code": exc.code, "error": exc.message})
        response = _error_response(exc)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(ValidationError)  # type: ignore[untyped-decorator]
    def _invalid_input(exc: ValidationError) -> Response[str]:
        return _error_response(validation_failed(exc))

    @app.not_found
    def _unknown_route(_: Exception) -> Response[str]:
        event = app.current_event
        message = f"no route {event.http_method} {event.path}"
        return _error_response(_NotFoundRoute(message))

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def _unexpected(exc: Exception) -> Response[str]:
        # A bug, not a client mistake: log it fully, answer JSON, keep the details private.
        logger.exception("unhandled error")
        return _error_response(InternalError("an internal error occurred; it has been logged"))

    return app


class _NotFoundRoute(MeterbillError):
    code = "not_found"
    http_status = 404


def tenant_id(app: APIGatewayHttpResolver) -> str:
    """The tenant the authorizer resolved from the API key; never taken from the request."""
    context = app.current_event.raw_event.get("requestContext", {})
    authorizer = context.get("authorizer") or {}
    tenant = (authorizer.get("lambda") or {}).get("tenant_id")
    if not tenant:
        raise Unauthorized("x-api-key is missing or invalid")
    logger.append_keys(tenant_id=tenant)
    return str(tenant)


def json_body(app: APIGatewayHttpResolver) -> dict[str, Any]:
    event = app.current_event
    raw = event.body or ""
    data = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        parsed = json.loads(data or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("body must be valid JSON", [{"field": "body"}]) from None
    if not isinstance(parsed, dict):
        raise ValidationFailed("body must be a JSON object", [{"field": "body"}])
    return parsed


def parse(model: type[ModelT], data: Mapping[str, Any]) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def query_param(app: APIGatewayHttpResolver, name: str) -> str | None:
    params = app.current_event.query_string_parameters or {}
    value = params.get(name)
    return value if value else None


def respond(status_code: int, body: Any) -> Response[str]:
    return Response(status_code=status_code, content_type="application/json", body=dumps(body))


def dumps(value: Any) -> str:
    return json.dumps(value, default=_encode, separators=(",", ":"))


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        # Python mode leaves Decimals to the branch above: pydantic's JSON mode would write
        # str(Decimal), which is exponent notation for amounts such as 1E-7.
        return value.model_dump()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _error_response(exc: MeterbillError) -> Response[str]:
    return respond(exc.http_status, exc.to_body())
