"""Usage and the proposed invoice of a subscription's current period, read from counters only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from meterbill.catalog import get_customer, get_plan, get_subscription
from meterbill.counters import CounterState
from meterbill.errors import NotFound, ValidationFailed
from meterbill.metering import combine, quantity_of
from meterbill.models import (
    AggregationType,
    BillingModel,
    Customer,
    Feature,
    Plan,
    Price,
    Subscription,
)
from meterbill.periods import Period, period_containing
from meterbill.pricing import billable_quantity, line_amount, package_count
from meterbill.storage import Store
from meterbill.values import plain
from meterbill.windows import Window, window_bounds, windows_between

__all__ = [
    "Invoice",
    "LineItem",
    "Usage",
    "UsageItem",
    "UsageWindow",
    "current_usage",
    "proposed_invoice",
    "usage_windows",
]

# A chart asks for at most this many windows at once; longer ranges page by `from`/`to`.
MAX_WINDOWS = {Window.HOUR: 31 * 24, Window.DAY: 366}


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
    counters = store.period_counters(tenant_id, subscription.id, period.start)
    items = [
        UsageItem(feature.id, feature.lookup_key, plain(quantity_of(feature, counters.get(fid))))
        for fid, feature in _plan_features(store, tenant_id, plan).items()
    ]
    return Usage(subscription, period, items)


def proposed_invoice(
    store: Store, tenant_id: str, subscription_id: str, now: datetime | None = None
) -> Invoice:
    subscription, plan, period = _current(store, tenant_id, subscription_id, now)
    counters = store.period_counters(tenant_id, subscription.id, period.start)
    features = _plan_features(store, tenant_id, plan)

    lines = []
    for price in plan.prices:
        if price.billing_model is BillingModel.FLAT_FEE:
            lines.append(_flat_fee_line(plan, price))
            continue
        assert price.feature_id is not None
        feature = features[price.feature_id]
        quantity = plain(quantity_of(feature, counters.get(feature.id)))
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
        subscription.timezone,
        subscription.billing_cycle,
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
    billable = billable_quantity(price, quantity)
    free = f" ({plain(price.included_quantity)} included)" if price.included_quantity else ""
    if price.billing_model is BillingModel.PACKAGE:
        assert price.package_size is not None and price.rounding is not None
        packages = package_count(billable, price.package_size, price.rounding)
        return (
            f"{feature.name}: {packages} x {plain(price.package_size)} units "
            f"at {price.amount} per package{free}"
        )
    if price.billing_model is BillingModel.TIERED:
        mode = (price.tier_mode or "").lower()
        return f"{feature.name}: {plain(billable)} units, {mode} tiers{free}"
    per = plain(price.per) if price.per is not None else Decimal(1)
    return f"{feature.name}: {plain(billable)} units at {price.amount} per {per}{free}"


@dataclass(frozen=True)
class UsageWindow:
    start: datetime
    end: datetime
    value: Decimal | None


def usage_windows(
    store: Store,
    tenant_id: str,
    customer_id: str,
    feature_id: str,
    start: datetime,
    end: datetime,
    window: Window,
) -> tuple[Customer, list[UsageWindow]]:
    """A feature's value per local hour or day of the customer, from window counters only."""
    customer = get_customer(store, tenant_id, customer_id)
    feature = store.get_feature(tenant_id, feature_id)
    if feature is None:
        raise NotFound(f"feature_id {feature_id!r} does not name a feature")
    if end <= start:
        raise ValidationFailed("to must be after from", [{"field": "to"}])
    zone = ZoneInfo(customer.timezone)
    bounds = windows_between(window, start, end, zone)
    if len(bounds) > MAX_WINDOWS[window]:
        raise ValidationFailed(
            f"from..to spans more than {MAX_WINDOWS[window]} {window.lower()} windows",
            [{"field": "to"}],
        )

    distinct = feature.aggregation.type is AggregationType.UNIQUE_COUNT
    kind = ("H" if window is Window.HOUR else "D") if distinct else "Q"
    counters = store.window_counters(
        tenant_id, customer.id, feature.id, kind, bounds[0][0], bounds[-1][1]
    )
    grouped: dict[datetime, list[CounterState]] = defaultdict(list)
    for counter_start, state in counters:
        grouped[window_bounds(window, counter_start, zone)[0]].append(state)
    values = [
        UsageWindow(low, high, _plain_or_none(combine(feature, grouped.get(low, []))))
        for low, high in bounds
    ]
    return customer, values


def _plain_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else plain(value)
