"""The OpenAPI 3.1 document of the v1 API, built from the request models so the two agree."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from meterbill import __version__
from meterbill.models import (
    BulkEventsRequest,
    CustomerCreate,
    EventRequest,
    FeatureCreate,
    PlanCreate,
    SubscriptionCancel,
    SubscriptionCreate,
    TenantSettings,
)

__all__ = ["ROUTES", "Route", "openapi_document"]


class Route(BaseModel):
    method: str
    path: str
    summary: str
    request: type[BaseModel] | None = None
    status: int = 200
    authenticated: bool = True


ROUTES = [
    Route(
        method="POST",
        path="/v1/events",
        summary="Ingest one usage event",
        request=EventRequest,
        status=202,
    ),
    Route(
        method="POST",
        path="/v1/events/bulk",
        summary="Ingest 1 to 1000 usage events",
        request=BulkEventsRequest,
        status=202,
    ),
    Route(method="GET", path="/v1/events", summary="A customer's events, newest first"),
    Route(
        method="POST",
        path="/v1/features",
        summary="Create a metered feature",
        request=FeatureCreate,
        status=201,
    ),
    Route(method="GET", path="/v1/features", summary="List metered features"),
    Route(method="GET", path="/v1/features/{feature_id}", summary="Get a metered feature"),
    Route(
        method="POST",
        path="/v1/plans",
        summary="Create a plan with its prices",
        request=PlanCreate,
        status=201,
    ),
    Route(method="GET", path="/v1/plans/{plan_id}", summary="Get a plan"),
    Route(
        method="POST",
        path="/v1/customers",
        summary="Create a customer",
        request=CustomerCreate,
        status=201,
    ),
    Route(method="GET", path="/v1/customers/{customer_id}", summary="Get a customer"),
    Route(
        method="GET",
        path="/v1/customers/{customer_id}/usage",
        summary="A feature's usage per local hour or day, for charts",
    ),
    Route(
        method="POST",
        path="/v1/subscriptions",
        summary="Subscribe a customer to a plan",
        request=SubscriptionCreate,
        status=201,
    ),
    Route(method="GET", path="/v1/subscriptions/{subscription_id}", summary="Get a subscription"),
    Route(
        method="GET",
        path="/v1/subscriptions/{subscription_id}/usage",
        summary="Usage of the current period",
    ),
    Route(
        method="GET",
        path="/v1/subscriptions/{subscription_id}/invoices/proposed",
        summary="Proposed invoice of the current period",
    ),
    Route(
        method="POST",
        path="/v1/subscriptions/{subscription_id}/cancel",
        summary="Cancel now (invoicing the partial period) or at the period end",
        request=SubscriptionCancel,
    ),
    Route(method="GET", path="/v1/invoices", summary="Finalized and void invoices, by number"),
    Route(method="GET", path="/v1/invoices/{invoice_id}", summary="Get an invoice"),
    Route(method="POST", path="/v1/invoices/{invoice_id}/void", summary="Void a finalized invoice"),
    Route(method="GET", path="/v1/settings", summary="The tenant's billing settings"),
    Route(
        method="PUT",
        path="/v1/settings",
        summary="Set the invoice grace period and the backdating limit",
        request=TenantSettings,
    ),
    Route(method="GET", path="/v1/openapi.json", summary="This document", authenticated=False),
]

_QUERY_PARAMETERS = {
    "/v1/invoices": [
        ("subscription_id", False, "Only this subscription's invoices"),
        ("customer_id", False, "Only this customer's invoices"),
        ("status", False, "finalized or void"),
        ("limit", False, "Page size, 1 to 200 (default 50)"),
        ("cursor", False, "next_cursor of the previous page"),
    ],
    "/v1/customers/{customer_id}/usage": [
        ("feature_id", True, "The feature to chart"),
        ("from", True, "RFC 3339 start; the window holding it is the first"),
        ("to", True, "RFC 3339 end (exclusive)"),
        ("window", True, "HOUR or DAY, in the customer's time zone"),
    ],
    "/v1/events": [
        ("external_customer_id", True, "The customer whose events to list"),
        ("limit", False, "Page size, 1 to 1000 (default 50)"),
        ("cursor", False, "next_cursor of the previous page"),
    ],
}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    models = sorted({r.request for r in ROUTES if r.request is not None}, key=lambda m: m.__name__)
    _, schemas = models_json_schema(
        [(model, "validation") for model in models], ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meterbill API",
            "version": __version__,
            "description": "Usage-based billing: meter events, price them, see invoices.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": {**schemas.get("$defs", {}), "Error": _ERROR_SCHEMA},
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        "paths": paths,
    }


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "responses": {
            str(route.status): {"description": "Success", "content": {"application/json": {}}},
            "400": _error_response("Invalid input; the message names the field"),
            "404": _error_response("Not found"),
        },
    }
    if route.authenticated:
        operation["security"] = [{"apiKey": []}]
        operation["responses"]["401"] = _error_response("Missing or invalid x-api-key")
    else:
        operation["security"] = []
    if route.request is not None:
        schema = {"$ref": f"#/components/schemas/{route.request.__name__}"}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
        operation["responses"]["409"] = _error_response("Already exists")
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_parameters(route.path)
    ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": required,
            "description": text,
            "schema": {"type": "string"},
        }
        for name, required, text in _QUERY_PARAMETERS.get(route.path, [])
    ]
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _error_response(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message", "http_status_code"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "http_status_code": {"type": "integer"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}
