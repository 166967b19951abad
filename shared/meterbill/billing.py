"""Usage and the proposed invoice of a subscription's current period, read from counters only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from meterbill.catalog import get_plan, get_subscription
from meterbill.errors import NotFound
from meterbill.models import BillingModel, Feature, Plan, Price, Subscription
from meterbill.periods import Period, period_containing
from meterbill.pricing import line_amount, package_count
from meterbill.storage import Store
from meterbill.values import plain

__all__ = ["Invoice", "LineItem", "Usage", "UsageItem", "current_usage", "proposed_invoice"]


@dataclass(frozen=True)
class UsageItem:
    feature_id: str
    lookup_key: str
    quantity: Decimal


@dataclass(frozen=True)
class Usage:
    subscription: Subscription
    period: Period
    items: list[UsageItem]


@dataclass(frozen=True)
class LineItem:
    price_id: str
    feature_id: str | None
    description: str
    quantity: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Invoice:
    subscription: Subscription
    currency: str
    period: Period
    line_items: list[LineItem]

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.line_items), Decimal(0))

    @property
    def total(self) -> Decimal:
        return self.subtotal


def current_usage(
    store: Store, tenant_id: str, subscription_id: str, now: datetime | None = None
) -> Usage:
    subscription, plan, period = _current(store, tenant_id, subscription_id, now)
    quantities = store.period_quantities(tenant_id, subscription.id, period.start)
    items = [
        UsageItem(feature.id, feature.lookup_key, plain(quantities.get(feature.id, Decimal(0))))
        for feature in _plan_features(store, tenant_id, plan).values()
    ]
    return Usage(subscription, period, items)


def proposed_invoice(
    store: Store, tenant_id: str, subscription_id: str, now: datetime | None = None
) -> Invoice:
    subscription, plan, period = _current(store, tenant_id, subscription_id, now)
    quantities = store.period_quantities(tenant_id, subscription.id, period.start)
    features = _plan_features(store, tenant_id, plan)

    lines = []
    for price in plan.prices:
        if price.billing_model is BillingModel.FLAT_FEE:
            lines.append(_flat_fee_line(plan, price))
            continue
        assert price.feature_id is not None
        feature = features[price.feature_id]
        quantity = plain(quantities.get(feature.id, Decimal(0)))
        lines.append(
            LineItem(
                price_id=price.id,
                feature_id=feature.id,
                description=_usage_description(feature, price, quantity),
                quantity=quantity,
                amount=line_amount(price, quantity, plan.currency),
            )
        )
    return Invoice(subscription, plan.currency, period, lines)


def _current(
    store: Store, tenant_id: str, subscription_id: str, now: datetime | None
) -> tuple[Subscription, Plan, Period]:
    subscription = get_subscription(store, tenant_id, subscription_id)
    plan = get_plan(store, tenant_id, subscription.plan_id)
    period = current_period(subscription, now)
    return subscription, plan, period


def current_period(subscription: Subscription, now: datetime | None = None) -> Period:
    """The period running at `now`; before the start date, the first period."""
    instant = max(now or datetime.now(UTC), subscription.start_date)
    period = period_containing(
        subscription.start_date,
        subscription.billing_period,
        subscription.billing_period_count,
        instant,
    )
    assert period is not None
    return period


def _plan_features(store: Store, tenant_id: str, plan: Plan) -> dict[str, Feature]:
    features = {}
    for price in plan.prices:
        if price.feature_id is None:
            continue
        feature = store.get_feature(tenant_id, price.feature_id)
        if feature is None:
            raise NotFound(f"feature {price.feature_id!r} priced by plan {plan.id!r} is missing")
        features[feature.id] = feature
    return features


def _flat_fee_line(plan: Plan, price: Price) -> LineItem:
    return LineItem(
        price_id=price.id,
        feature_id=None,
        description=f"{plan.name}: flat fee",
        quantity=Decimal(1),
        amount=line_amount(price, Decimal(1), plan.currency),
    )


def _usage_description(feature: Feature, price: Price, quantity: Decimal) -> str:
    if price.billing_model is BillingModel.PACKAGE:
        assert price.package_size is not None and price.rounding is not None
        packages = package_count(quantity, price.package_size, price.rounding)
        return (
            f"{feature.name}: {packages} x {plain(price.package_size)} units "
            f"at {price.amount} per package"
        )
    per = plain(price.per) if price.per is not None else Decimal(1)
    return f"{feature.name}: {quantity} units at {price.amount} per {per}"
