"""Usage, proposed invoices and the events a customer sent: everything read from the meter."""

from datetime import datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill import billing
from meterbill.errors import ValidationFailed
from meterbill.http import create_resolver, logger, query_param, respond, tenant_id
from meterbill.periods import parse_instant
from meterbill.runtime import store
from meterbill.views import event_view, invoice_view, usage_view, usage_windows_view
from meterbill.windows import Window

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


@app.get("/v1/customers/<customer_id>/usage")
def get_usage_windows(customer_id: str) -> Response[str]:
    tenant = tenant_id(app)
    feature_id = _required(query_param(app, "feature_id"), "feature_id")
    start = _instant(query_param(app, "from"), "from")
    end = _instant(query_param(app, "to"), "to")
    window = _window(query_param(app, "window"))
    customer, windows = billing.usage_windows(
        store(), tenant, customer_id, feature_id, start, end, window
    )
    return respond(200, usage_windows_view(customer, feature_id, window, windows))


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


def _required(text: str | None, name: str) -> str:
    if text is None:
        raise ValidationFailed(f"{name} is required", [{"field": name}])
    return text


def _instant(text: str | None, name: str) -> datetime:
    try:
        return parse_instant(_required(text, name))
    except (ValueError, OverflowError):
        raise ValidationFailed(
            f"{name} must be an RFC 3339 timestamp such as 2026-12-01T00:00:00Z", [{"field": name}]
        ) from None


def _window(text: str | None) -> Window:
    try:
        return Window(_required(text, "window").upper())
    except ValueError:
        raise ValidationFailed("window must be HOUR or DAY", [{"field": "window"}]) from None


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
