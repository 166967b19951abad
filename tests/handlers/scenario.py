"""The OpenAI o1 scenario shared by the aggregator and billing tests.

Three token features of one event (`llm.tokens`), told apart by the `model` and `prompt_type`
properties and summing `tokens`; one plan pricing each per package of 1,000,000 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from meterbill.demo import o1_feature, o1_plan
from meterbill.periods import parse_instant
from tests.handlers.api import Api

O1_EVENT = "llm.tokens"
O1_MODEL = "OpenAI O1"
O1_CUSTOMER = "acme-ai"
# USD per package of 1,000,000 tokens, by prompt type.
O1_PRICES = {"input": "15.00", "output": "60.00", "cached_input": "7.50"}


@dataclass(frozen=True)
class Subscribed:
    """What `subscribe_o1` created: the ids tests need to send usage and read it back."""

    subscription_id: str
    plan_id: str
    feature_ids: dict[str, str]
    period_start: datetime


def subscribe_o1(catalog_api: Api, start_date: str | None = None) -> Subscribed:
    """Create the o1 catalog through the catalog handler and subscribe `O1_CUSTOMER` to it."""
    feature_ids = {}
    for prompt_type in O1_PRICES:
        feature = catalog_api.post("/v1/features", token_feature(prompt_type))
        assert feature.status == 201, feature.body
        feature_ids[prompt_type] = feature.body["id"]
    plan = catalog_api.post("/v1/plans", o1_plan(feature_ids))
    assert plan.status == 201, plan.body
    customer = catalog_api.post("/v1/customers", {"external_id": O1_CUSTOMER, "name": "Acme AI"})
    assert customer.status == 201, customer.body

    request = {"external_customer_id": O1_CUSTOMER, "plan_id": plan.body["id"]}
    if start_date is not None:
        request["start_date"] = start_date
    subscription = catalog_api.post("/v1/subscriptions", request)
    assert subscription.status == 201, subscription.body
    return Subscribed(
        subscription_id=subscription.body["id"],
        plan_id=plan.body["id"],
        feature_ids=feature_ids,
        period_start=parse_instant(subscription.body["current_period_start"]),
    )


def token_feature(prompt_type: str) -> dict[str, Any]:
    return o1_feature(prompt_type)


def token_event(
    event_id: str,
    prompt_type: str,
    tokens: str,
    customer: str = O1_CUSTOMER,
    timestamp: str | None = None,
    model: str = O1_MODEL,
) -> dict[str, Any]:
    """A usage event as the Flexprice SDK sends it: every property a string."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "event_name": O1_EVENT,
        "external_customer_id": customer,
        "properties": {"model": model, "prompt_type": prompt_type, "tokens": tokens},
    }
    if timestamp is not None:
        event["timestamp"] = timestamp
    return event


def send_events(ingest_api: Api, events: list[dict[str, Any]]) -> None:
    reply = ingest_api.post("/v1/events/bulk", {"events": events})
    assert reply.status == 202, reply.body
