"""The OpenAI o1 walkthrough: three token features, package prices, a customer's usage, and the
proposed invoice (75.00 + 120.00 + 7.50 = 202.50 USD), all through the HTTP API."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from meterbill.local.client import ApiClient, ApiResponse

__all__ = ["O1_USAGE", "format_invoice", "o1_feature", "o1_plan", "run_walkthrough"]

EVENT_NAME = "llm.tokens"
MODEL = "OpenAI O1"
# (prompt type, feature name, USD per 1M tokens)
O1_PRICES = [
    ("input", "OpenAI O1 input tokens", "15.00"),
    ("output", "OpenAI O1 output tokens", "60.00"),
    ("cached_input", "OpenAI O1 cached input tokens", "7.50"),
]
# Token counts per event, several events per prompt type; the SDK sends them as strings.
O1_USAGE = {
    "input": ["2000000", "2000000", "1000000"],
    "output": ["1500000", "500000"],
    "cached_input": ["1000000"],
}


class WalkthroughFailed(RuntimeError):
    pass


def run_walkthrough(client: ApiClient, customer: str = "acme-ai") -> dict[str, Any]:
    """Create the catalog, subscribe a customer, send usage; return the proposed invoice."""
    feature_ids = {
        prompt_type: _create(client, "/v1/features", o1_feature(prompt_type))["id"]
        for prompt_type, _, _ in O1_PRICES
    }
    plan = _create(client, "/v1/plans", o1_plan(feature_ids))
    _create(client, "/v1/customers", {"external_id": customer, "name": "Acme AI"})
    subscription = _create(
        client, "/v1/subscriptions", {"external_customer_id": customer, "plan_id": plan["id"]}
    )

    events = _usage_events(customer)
    _expect(client.post("/v1/events/bulk", {"events": events}), 202)
    expected = {
        feature_ids[t]: sum((Decimal(v) for v in vs), Decimal(0)) for t, vs in O1_USAGE.items()
    }
    _wait_for_usage(client, subscription["id"], expected)

    return _expect(client.get(f"/v1/subscriptions/{subscription['id']}/invoices/proposed"), 200)


def format_invoice(invoice: dict[str, Any]) -> str:
    width = max(len(line["description"]) for line in invoice["line_items"]) + 2
    rows = [
        f"Proposed invoice {invoice['subscription_id']} ({invoice['currency']})",
        f"Period {invoice['period_start']} -> {invoice['period_end']}",
        "",
        f"{'Line item':<{width}}{'Quantity':>12}{'Amount':>12}",
        "-" * (width + 24),
    ]
    for line in invoice["line_items"]:
        rows.append(f"{line['description']:<{width}}{line['quantity']:>12}{line['amount']:>12}")
    rows.append("-" * (width + 24))
    rows.append(f"{'Total ' + invoice['currency']:<{width}}{'':>12}{invoice['total']:>12}")
    return "\n".join(rows)


def o1_feature(prompt_type: str) -> dict[str, Any]:
    """The metered feature for one prompt type: a SUM of `tokens`, filtered by model and type."""
    name = next(name for kind, name, _ in O1_PRICES if kind == prompt_type)
    return {
        "name": name,
        "lookup_key": f"o1-{prompt_type.replace('_', '-')}-tokens",
        "event_name": EVENT_NAME,
        "aggregation": {"type": "SUM", "field": "tokens"},
        "filters": {"model": [MODEL], "prompt_type": [prompt_type]},
    }


def o1_plan(feature_ids: dict[str, str]) -> dict[str, Any]:
    """The o1 plan: a PACKAGE price per 1,000,000 tokens for each prompt type, rounding up."""
    return {
        "name": "OpenAI o1",
        "lookup_key": "openai-o1",
        "currency": "USD",
        "billing_period": "MONTHLY",
        "prices": [
            {
                "feature_id": feature_ids[prompt_type],
                "billing_model": "PACKAGE",
                "amount": amount,
                "package_size": "1000000",
                "rounding": "up",
            }
            for prompt_type, _, amount in O1_PRICES
        ],
    }


def _usage_events(customer: str) -> list[dict[str, Any]]:
    events = []
    for prompt_type, counts in O1_USAGE.items():
        for index, tokens in enumerate(counts):
            events.append(
                {
                    "event_id": f"{customer}-{prompt_type}-{index}",
                    "event_name": EVENT_NAME,
                    "external_customer_id": customer,
                    "properties": {"model": MODEL, "prompt_type": prompt_type, "tokens": tokens},
                    "source": "demo",
                }
            )
    return events


def _wait_for_usage(
    client: ApiClient, subscription_id: str, expected: dict[str, Decimal], timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        usage = _expect(client.get(f"/v1/subscriptions/{subscription_id}/usage"), 200)
        seen = {item["feature_id"]: Decimal(item["quantity"]) for item in usage["items"]}
        if all(seen.get(fid) == quantity for fid, quantity in expected.items()):
            return
        if time.monotonic() > deadline:
            raise WalkthroughFailed(f"usage did not arrive in {timeout}s: {seen}")
        time.sleep(0.1)


def _create(client: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _expect(client.post(path, body), 201)


def _expect(response: ApiResponse, status: int) -> dict[str, Any]:
    if response.status != status or not isinstance(response.body, dict):
        raise WalkthroughFailed(f"expected {status}, got {response.status}: {response.body}")
    return response.body
