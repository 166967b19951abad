"""The JSON shapes of API responses, built from domain objects. Decimals stay Decimals here;
the HTTP layer writes them as strings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from meterbill.billing import ProposedInvoice, Usage, UsageWindow, current_period
from meterbill.models import Customer, Invoice, StoredEvent, Subscription
from meterbill.windows import Window

__all__ = [
    "event_view",
    "final_invoice_view",
    "invoice_view",
    "subscription_view",
    "usage_view",
    "usage_windows_view",
]


def subscription_view(subscription: Subscription, now: datetime | None = None) -> dict[str, Any]:
    period = current_period(subscription, now)
    return {
        **subscription.model_dump(mode="json"),
        "current_period_start": period.start,
        "current_period_end": period.end,
    }


def usage_view(usage: Usage) -> dict[str, Any]:
    return {
        "subscription_id": usage.subscription.id,
        "period_start": usage.period.start,
        "period_end": usage.period.end,
        "items": [
            {"feature_id": i.feature_id, "lookup_key": i.lookup_key, "quantity": i.quantity}
            for i in usage.items
        ],
    }


def invoice_view(invoice: ProposedInvoice) -> dict[str, Any]:
    return {
        "subscription_id": invoice.subscription.id,
        "customer_id": invoice.subscription.customer_id,
        "status": "proposed",
        "currency": invoice.currency,
        "period_start": invoice.period.start,
        "period_end": invoice.period.end,
        "line_items": [
            {
                "price_id": line.price_id,
                "feature_id": line.feature_id,
                "description": line.description,
                "quantity": line.quantity,
                "amount": line.amount,
                "kind": line.kind.value,
            }
            for line in invoice.line_items
        ],
        "subtotal": invoice.subtotal,
        "total": invoice.total,
    }


def event_view(event: StoredEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_name": event.event_name,
        "external_customer_id": event.external_customer_id,
        "customer_id": event.customer_id,
        "timestamp": event.timestamp,
        "properties": event.properties,
        "source": event.source,
        "received_at": event.received_at,
    }


def usage_windows_view(
    customer: Customer, feature_id: str, window: Window, windows: list[UsageWindow]
) -> dict[str, Any]:
    return {
        "customer_id": customer.id,
        "feature_id": feature_id,
        "window": window.value,
        "timezone": customer.timezone,
        "items": [{"start": w.start, "end": w.end, "value": w.value} for w in windows],
    }


def final_invoice_view(invoice: Invoice) -> dict[str, Any]:
    body = invoice.model_dump(mode="json", exclude={"settlements"})
    body["line_items"] = [
        {**line.model_dump(mode="json"), "quantity": line.quantity, "amount": line.amount}
        for line in invoice.line_items
    ]
    body.update(subtotal=invoice.subtotal, total=invoice.total)
    return body
