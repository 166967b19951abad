"""Usage and the proposed invoice of a subscription's current period, read from counters only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    InvoiceLine,
    LineKind,
    Plan,
    Price,
    Settlement,
    Subscription,
)
from meterbill.periods import Period, format_instant
from meterbill.pricing import billable_quantity, line_amount, package_count
from meterbill.storage import Store
from meterbill.values import plain
from meterbill.windows import Window, window_bounds, windows_between

__all__ = [
    "ProposedInvoice",
    "Usage",
    "UsageItem",
    "UsageWindow",
    "current_usage",
    "late_lines",
    "period_lines",
    "plan_features",
    "proposed_invoice",
    "settlement_of",
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
class ProposedInvoice:
    subscription: Subscription
    currency: str
    period: Period
    line_items: list[InvoiceLine]

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
        for fid, feature in plan_features(store, tenant_id, plan).items()
    ]
    return Usage(subscription, period, items)


def proposed_invoice(
    store: Store, tenant_id: str, subscription_id: str, now: datetime | None = None
) -> ProposedInvoice:
    """The current period's lines, plus late usage of invoiced periods still to be billed."""
    subscription, plan, period = _current(store, tenant_id, subscription_id, now)
    features = plan_features(store, tenant_id, plan)
    counters = store.period_counters(tenant_id, subscription.id, period.start)
    lines = period_lines(plan, features, counters, period)
    late, _ = late_lines(store, tenant_id, subscription, plan, features, period.start, now)
    return ProposedInvoice(subscription, plan.currency, period, lines + late)


def period_lines(
    plan: Plan,
    features: dict[str, Feature],
    counters: dict[str, CounterState],
    period: Period,
    flat_fee_share: Decimal = Decimal(1),
) -> list[InvoiceLine]:
    """One line per price of the plan, in plan order. `flat_fee_share` prorates flat fees."""
    lines = []
    for price in plan.prices:
        if price.billing_model is BillingModel.FLAT_FEE:
            lines.append(_flat_fee_line(plan, price, period, flat_fee_share))
            continue
        assert price.feature_id is not None
        feature = features[price.feature_id]
        quantity = plain(quantity_of(feature, counters.get(feature.id)))
        lines.append(
            InvoiceLine(
                price_id=price.id,
                feature_id=feature.id,
                description=_usage_description(feature, price, quantity),
                quantity=quantity,
                amount=line_amount(price, quantity, plan.currency),
                kind=LineKind.USAGE,
                period_start=period.start,
                period_end=period.end,
            )
        )
    return lines


def settlement_of(period: Period, lines: list[InvoiceLine]) -> Settlement:
    """What a period's own lines bill, per usage price."""
    prices = {
        line.price_id: (line.quantity, line.amount) for line in lines if line.kind is LineKind.USAGE
    }
    return Settlement(period_start=period.start, period_end=period.end, prices=prices)


def late_lines(
    store: Store,
    tenant_id: str,
    subscription: Subscription,
    plan: Plan,
    features: dict[str, Feature],
    before: datetime,
    now: datetime | None = None,
) -> tuple[list[InvoiceLine], list[Settlement]]:
    """Usage that reached invoiced periods after their invoice: one line per period and price,
    billing the difference between what the usage costs now and what was billed for it.

    Returns the lines and the settlements that billing them brings about. Only periods that
    can still change are read: events older than the backdating limit are refused at ingest.
    """
    limit = store.get_settings(tenant_id).backdating_limit_days
    oldest_open = (now or datetime.now(UTC)) - timedelta(days=limit + 1)
    lines: list[InvoiceLine] = []
    settlements: list[Settlement] = []
    for settled, settler in store.settled_periods(tenant_id, subscription.id):
        if settled.period_start >= before or settled.period_end < oldest_open:
            continue
        counters = store.period_counters(tenant_id, subscription.id, settled.period_start)
        updated = dict(settled.prices)
        for price in plan.prices:
            if price.feature_id is None:
                continue
            feature = features[price.feature_id]
            quantity = plain(quantity_of(feature, counters.get(feature.id)))
            amount = line_amount(price, quantity, plan.currency)
            billed_quantity, billed_amount = settled.prices.get(price.id, (Decimal(0), Decimal(0)))
            if (quantity, amount) == (billed_quantity, billed_amount):
                continue
            lines.append(
                InvoiceLine(
                    price_id=price.id,
                    feature_id=feature.id,
                    description=(
                        f"late usage for {format_instant(settled.period_start)} - "
                        f"{format_instant(settled.period_end)}: {feature.name}"
                    ),
                    quantity=quantity - billed_quantity,
                    amount=amount - billed_amount,
                    kind=LineKind.LATE_USAGE,
                    period_start=settled.period_start,
                    period_end=settled.period_end,
                )
            )
            updated[price.id] = (quantity, amount)
        if updated != settled.prices:
            settlements.append(
                settled.model_copy(update={"prices": updated, "previous_settler": settler})
            )
    return lines, settlements


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
    period = subscription.period_at(instant)
    assert period is not None
    return period


def plan_features(store: Store, tenant_id: str, plan: Plan) -> dict[str, Feature]:
    features: dict[str, Feature] = {}
    for price in plan.prices:
        if price.feature_id is None:
            continue
        feature = store.get_feature(tenant_id, price.feature_id)
        if feature is None:
            raise NotFound(f"feature {price.feature_id!r} priced by plan {plan.id!r} is missing")
        features[feature.id] = feature
    return features


def _flat_fee_line(plan: Plan, price: Price, period: Period, share: Decimal) -> InvoiceLine:
    assert price.amount is not None
    prorated = price if share == 1 else price.model_copy(update={"amount": price.amount * share})
    description = f"{plan.name}: flat fee"
    if share != 1:
        description += f" (prorated, {share.quantize(Decimal('0.000001'))} of the period)"
    return InvoiceLine(
        price_id=price.id,
        feature_id=None,
        description=description,
        quantity=Decimal(1),
        amount=line_amount(prorated, Decimal(1), plan.currency),
        kind=LineKind.FLAT_FEE,
        period_start=period.start,
        period_end=period.end,
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
