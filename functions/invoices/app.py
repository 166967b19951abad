"""Invoices API (list, get, void) and subscription cancellation."""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill import invoicing
from meterbill.errors import NotFound, ValidationFailed
from meterbill.http import (
    create_resolver,
    json_body,
    logger,
    parse,
    query_param,
    respond,
    tenant_id,
)
from meterbill.models import InvoiceStatus, SubscriptionCancel
from meterbill.runtime import publisher, store
from meterbill.views import final_invoice_view, subscription_view

app = create_resolver()

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@app.get("/v1/invoices")
def list_invoices() -> Response[str]:
    tenant = tenant_id(app)
    scope = _scope(query_param(app, "subscription_id"), query_param(app, "customer_id"))
    status = query_param(app, "status")
    if status is not None and status not in (InvoiceStatus.FINALIZED, InvoiceStatus.VOID):
        raise ValidationFailed("status must be finalized or void", [{"field": "status"}])
    ids, cursor = store().list_invoices(
        tenant, scope, status, _limit(query_param(app, "limit")), query_param(app, "cursor")
    )
    invoices = [store().get_invoice(tenant, invoice_id) for invoice_id in ids]
    items = [final_invoice_view(invoice) for invoice in invoices if invoice is not None]
    return respond(200, {"items": items, "next_cursor": cursor})


@app.get("/v1/invoices/<invoice_id>")
def get_invoice(invoice_id: str) -> Response[str]:
    invoice = store().get_invoice(tenant_id(app), invoice_id)
    if invoice is None or invoice.status is InvoiceStatus.DRAFT:
        raise NotFound(f"invoice {invoice_id!r} was not found")
    return respond(200, final_invoice_view(invoice))


@app.post("/v1/invoices/<invoice_id>/void")
def void_invoice(invoice_id: str) -> Response[str]:
    voided = invoicing.void_invoice(store(), publisher(), tenant_id(app), invoice_id, _now())
    return respond(200, final_invoice_view(voided))


@app.post("/v1/subscriptions/<subscription_id>/cancel")
def cancel_subscription(subscription_id: str) -> Response[str]:
    tenant = tenant_id(app)
    request = parse(SubscriptionCancel, json_body(app))
    subscription, invoices = invoicing.cancel_subscription(
        store(), publisher(), tenant, subscription_id, request.at, _now()
    )
    body = {
        "subscription": subscription_view(subscription),
        "invoices": [final_invoice_view(invoice) for invoice in invoices],
    }
    return respond(200, body)


def _scope(subscription_id: str | None, customer_id: str | None) -> str:
    if subscription_id and customer_id:
        raise ValidationFailed(
            "give subscription_id or customer_id, not both", [{"field": "customer_id"}]
        )
    if subscription_id:
        return f"SUB#{subscription_id}"
    if customer_id:
        return f"CUSTOMER#{customer_id}"
    return "INVOICES"


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise ValidationFailed(
            f"limit must be a whole number from 1 to {MAX_LIMIT}", [{"field": "limit"}]
        )
    return int(text)


def _now() -> datetime:
    return datetime.now(UTC)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
