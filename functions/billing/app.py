"""Usage, proposed invoices and the events a customer sent: everything read from the meter."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill import billing
from meterbill.errors import ValidationFailed
from meterbill.http import create_resolver, logger, query_param, respond, tenant_id
from meterbill.runtime import store
from meterbill.views import event_view, invoice_view, usage_view

app = create_resolver()

DEFAULT_EVENTS_LIMIT = 50
MAX_EVENTS_LIMIT = 1000


@app.get("/v1/subscriptions/<subscription_id>/usage")
def get_usage(subscription_id: str) -> Response[str]:
    usage = billing.current_usage(store(), tenant_id(app), subscription_id)
    return respond(200, usage_view(usage))


@app.get("/v1/subscriptions/<subscription_id>/invoices/proposed")
def get_proposed_invoice(subscription_id: str) -> Response[str]:
    invoice = billing.proposed_invoice(store(), tenant_id(app), subscription_id)
    return respond(200, invoice_view(invoice))


@app.get("/v1/events")
def list_events() -> Response[str]:
    tenant = tenant_id(app)
    external_customer_id = query_param(app, "external_customer_id")
    if external_customer_id is None:
        raise ValidationFailed(
            "external_customer_id is required", [{"field": "external_customer_id"}]
        )
    page = store().list_customer_events(
        tenant, external_customer_id, _limit(query_param(app, "limit")), query_param(app, "cursor")
    )
    items = [event_view(event) for event in page.events]
    return respond(200, {"items": items, "next_cursor": page.next_cursor})


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_EVENTS_LIMIT
    # isascii: str.isdigit() also accepts digits such as "²" that int() cannot read.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_EVENTS_LIMIT:
        raise ValidationFailed(
            f"limit must be a whole number from 1 to {MAX_EVENTS_LIMIT}", [{"field": "limit"}]
        )
    return int(text)


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
