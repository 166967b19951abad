"""Features, plans, customers and subscriptions: create and read, scoped to one tenant."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from meterbill.errors import NotFound, ValidationFailed
from meterbill.ids import derived_id, random_id
from meterbill.models import (
    BillingModel,
    Customer,
    CustomerCreate,
    Feature,
    FeatureCreate,
    Plan,
    PlanCreate,
    Price,
    Subscription,
    SubscriptionCreate,
)
from meterbill.periods import parse_instant
from meterbill.queues import CloseQueue
from meterbill.storage import Store

__all__ = [
    "create_customer",
    "create_feature",
    "create_plan",
    "create_subscription",
    "customer_id_for",
    "get_customer",
    "get_feature",
    "get_plan",
    "get_subscription",
    "list_features",
]


def create_feature(store: Store, tenant_id: str, request: FeatureCreate) -> Feature:
    feature = Feature(
        id=derived_id("feat", tenant_id, request.lookup_key),
        created_at=_now(),
        **request.model_dump(),
    )
    store.create_feature(tenant_id, feature)
    return feature


def get_feature(store: Store, tenant_id: str, feature_id: str) -> Feature:
    feature = store.get_feature(tenant_id, feature_id)
    if feature is None:
        raise NotFound(f"feature {feature_id!r} was not found")
    return feature


def list_features(store: Store, tenant_id: str) -> list[Feature]:
    return sorted(store.list_features(tenant_id), key=lambda f: (f.created_at, f.id))


def create_plan(store: Store, tenant_id: str, request: PlanCreate) -> Plan:
    plan_id = derived_id("plan", tenant_id, request.lookup_key)
    prices = []
    for index, price_request in enumerate(request.prices):
        fields = price_request.model_dump()
        if fields.get("feature_id") is not None:
            _require_feature(store, tenant_id, fields["feature_id"], f"prices.{index}.feature_id")
        prices.append(Price(id=derived_id("price", tenant_id, plan_id, str(index)), **fields))
    _reject_double_pricing(prices)

    plan = Plan(
        id=plan_id,
        name=request.name,
        lookup_key=request.lookup_key,
        currency=request.currency,
        billing_period=request.billing_period,
        billing_period_count=request.billing_period_count,
        billing_cycle=request.billing_cycle,
        prices=prices,
        created_at=_now(),
    )
    store.create_plan(tenant_id, plan)
    return plan


def get_plan(store: Store, tenant_id: str, plan_id: str) -> Plan:
    plan = store.get_plan(tenant_id, plan_id)
    if plan is None:
        raise NotFound(f"plan {plan_id!r} was not found")
    return plan


def customer_id_for(tenant_id: str, external_id: str) -> str:
    return derived_id("cus", tenant_id, external_id)


def create_customer(store: Store, tenant_id: str, request: CustomerCreate) -> Customer:
    customer = Customer(
        id=customer_id_for(tenant_id, request.external_id),
        created_at=_now(),
        **request.model_dump(),
    )
    store.create_customer(tenant_id, customer)
    return customer


def get_customer(store: Store, tenant_id: str, customer_id: str) -> Customer:
    customer = store.get_customer(tenant_id, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id!r} was not found")
    return customer


def create_subscription(
    store: Store, tenant_id: str, request: SubscriptionCreate, now: datetime | None = None
) -> Subscription:
    customer = _subscribing_customer(store, tenant_id, request)
    plan = store.get_plan(tenant_id, request.plan_id)
    if plan is None:
        raise NotFound(f"plan_id {request.plan_id!r} does not name a plan")

    created_at = now or _now()
    start = parse_instant(request.start_date) if request.start_date else created_at
    subscription = Subscription(
        id=random_id("sub"),
        customer_id=customer.id,
        external_customer_id=customer.external_id,
        plan_id=plan.id,
        status="active",
        start_date=start,
        billing_period=plan.billing_period,
        billing_period_count=plan.billing_period_count,
        billing_cycle=plan.billing_cycle,
        timezone=customer.timezone,
        created_at=created_at,
        next_close_start=start,
    )
    first = subscription.period_at(start)
    assert first is not None
    grace = timedelta(seconds=store.get_settings(tenant_id).invoice_grace_period_seconds)
    store.create_subscription(tenant_id, subscription, due_at=first.end + grace)
    if start < created_at:
        _queue_backfill(tenant_id, subscription.id)
    return subscription


def _queue_backfill(tenant_id: str, subscription_id: str) -> None:
    """Count the stored events a backdated subscription predates, once, a little later: by
    then every event received before the subscription existed is stored (ingest answers within
    its 29-second timeout)."""
    delay = int(os.environ.get("BACKFILL_DELAY_SECONDS", "60"))
    message = {"kind": "backfill", "tenant_id": tenant_id, "subscription_id": subscription_id}
    CloseQueue.from_environment().send([message], delay_seconds=delay)


def get_subscription(store: Store, tenant_id: str, subscription_id: str) -> Subscription:
    subscription = store.get_subscription(tenant_id, subscription_id)
    if subscription is None:
        raise NotFound(f"subscription {subscription_id!r} was not found")
    return subscription


def _subscribing_customer(store: Store, tenant_id: str, request: SubscriptionCreate) -> Customer:
    if request.customer_id is not None:
        customer = store.get_customer(tenant_id, request.customer_id)
        if customer is None:
            raise NotFound(f"customer_id {request.customer_id!r} does not name a customer")
        return customer
    assert request.external_customer_id is not None
    customer = store.get_customer(
        tenant_id, customer_id_for(tenant_id, request.external_customer_id)
    )
    if customer is None:
        raise NotFound(
            f"external_customer_id {request.external_customer_id!r} does not name a customer"
        )
    return customer


def _require_feature(store: Store, tenant_id: str, feature_id: str, field: str) -> None:
    if store.get_feature(tenant_id, feature_id) is None:
        raise ValidationFailed(
            f"{field}: feature {feature_id!r} does not exist",
            [{"field": field, "message": "unknown feature"}],
        )


def _reject_double_pricing(prices: list[Price]) -> None:
    # One usage price per feature: two would bill the same usage twice on one invoice.
    seen: set[str] = set()
    for index, price in enumerate(prices):
        if price.billing_model is BillingModel.FLAT_FEE or price.feature_id is None:
            continue
        if price.feature_id in seen:
            field = f"prices.{index}.feature_id"
            raise ValidationFailed(
                f"{field}: feature {price.feature_id!r} is priced twice in this plan",
                [{"field": field, "message": "duplicate feature"}],
            )
        seen.add(price.feature_id)


def _now() -> datetime:
    return datetime.now(UTC)
