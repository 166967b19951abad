"""What the benchmark sends: a token-metering catalog and usage events shaped like the SDK's.

Every feature matches every event (`llm.tokens` of one model), so "events matching 3 features"
means a plan pricing three of them. Even features sum `tokens`, odd ones count events. Events
carry their properties as strings, as the Flexprice SDK sends them, and stay well under 1 KB
as stored items.

Times are relative to now (ingest refuses events older than the backdating limit, 35 days by
default) but chosen so that the counted figures never depend on the day: events of one request
are close together (10 ms apart, as events sent while they happen are) inside one 15-minute
bucket an hour ago (`busy_at`); the invoice scenarios spread them over 1 or 31 days on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from meterbill import catalog
from meterbill.models import (
    CustomerCreate,
    Feature,
    FeatureCreate,
    Plan,
    PlanCreate,
    Subscription,
    SubscriptionCreate,
)
from meterbill.storage import EVENT_LANES, Store, event_lane

__all__ = [
    "Catalog",
    "busy_at",
    "create_catalog",
    "expected_quantities",
    "lane_covering_events",
    "usage_events",
]

EVENT_NAME = "llm.tokens"
MODEL = "OpenAI O1"
EVENT_SPACING = timedelta(milliseconds=10)


def busy_at(now: datetime) -> datetime:
    """A minute into the 15-minute bucket that began an hour or so before `now`: 1,000 events
    10 ms apart from here stay inside one bucket."""
    hour_ago = now.astimezone(UTC) - timedelta(hours=1)
    minute = hour_ago.minute - hour_ago.minute % 15
    return hour_ago.replace(minute=minute, second=0, microsecond=0) + timedelta(minutes=1)


@dataclass(frozen=True)
class Catalog:
    tenant_id: str
    features: list[Feature]
    plan: Plan
    subscriptions: dict[str, Subscription]  # by external customer id

    @property
    def customers(self) -> list[str]:
        return list(self.subscriptions)


def feature_request(index: int) -> FeatureCreate:
    aggregation: dict[str, Any] = (
        {"type": "SUM", "field": "tokens"} if index % 2 == 0 else {"type": "COUNT"}
    )
    return FeatureCreate.model_validate(
        {
            "name": f"Metered feature {index}",
            "lookup_key": f"feature-{index}",
            "event_name": EVENT_NAME,
            "aggregation": aggregation,
            "filters": {"model": [MODEL]},
        }
    )


def create_catalog(
    store: Store,
    tenant_id: str,
    features: int,
    customers: list[str],
    start: datetime,
    billing_period: str = "MONTHLY",
) -> Catalog:
    """Features, a plan pricing all of them, and one subscription per customer, each
    starting at `start`."""
    created = [
        catalog.create_feature(store, tenant_id, feature_request(i)) for i in range(features)
    ]
    plan = catalog.create_plan(
        store,
        tenant_id,
        PlanCreate.model_validate(
            {
                "name": "Tokens",
                "lookup_key": "tokens",
                "currency": "USD",
                "billing_period": billing_period,
                "prices": [
                    {
                        "billing_model": "PER_UNIT",
                        "feature_id": feature.id,
                        "amount": "0.000015",
                    }
                    for feature in created
                ],
            }
        ),
    )
    subscriptions = {}
    for external_id in customers:
        catalog.create_customer(
            store, tenant_id, CustomerCreate(external_id=external_id, name=external_id)
        )
        subscriptions[external_id] = catalog.create_subscription(
            store,
            tenant_id,
            SubscriptionCreate(
                external_customer_id=external_id,
                plan_id=plan.id,
                start_date=start.isoformat(),
            ),
        )
    return Catalog(tenant_id, created, plan, subscriptions)


def usage_event(event_id: str, customer: str, timestamp: datetime, tokens: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_name": EVENT_NAME,
        "external_customer_id": customer,
        "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
        "properties": {"model": MODEL, "prompt_type": "input", "tokens": str(tokens)},
        "source": "bench",
    }


def usage_events(
    prefix: str, count: int, customers: list[str], start: datetime, days: int = 1
) -> list[dict[str, Any]]:
    """`count` events `EVENT_SPACING` apart from `start`, for the customers in turn; with
    `days`, dealt out over that many days at the same time of day (one busy quarter-hour a
    day)."""
    return [
        usage_event(
            f"{prefix}-{i:07d}",
            customers[i % len(customers)],
            start + timedelta(days=i % days) + EVENT_SPACING * (i // days),
            1000 + (i * 37) % 9000,
        )
        for i in range(count)
    ]


def lane_covering_events(prefix: str, customer: str, at: datetime) -> list[dict[str, Any]]:
    """One event on each events lane: after them a counter carries every lane's watermark,
    as any counter does once a period is busy."""
    by_lane: dict[str, str] = {}
    candidate = 0
    while len(by_lane) < EVENT_LANES:
        event_id = f"{prefix}-{customer}-{candidate}"
        by_lane.setdefault(event_lane(event_id), event_id)
        candidate += 1
    return [usage_event(event_id, customer, at, 1000) for event_id in by_lane.values()]


def expected_quantities(
    features: list[Feature], events: list[dict[str, Any]]
) -> dict[str, Decimal]:
    """What each feature's counter should hold after `events` (every event matches)."""
    tokens = sum((Decimal(e["properties"]["tokens"]) for e in events), Decimal(0))
    return {f.id: tokens if f.aggregation.type == "SUM" else Decimal(len(events)) for f in features}
