"""Counting again from raw events: reconcile (compare, and repair on request) and backfill.

The stream keeps counters current; these paths read the stored events instead, through the
customer-and-time index, so their cost grows with events and they stay off every hot path.

* **reconcile** recounts a customer's periods and reports where counters differ; `repair` sets
  the counters to the recount, each only if it did not change while being recounted. Repair is
  meant for after an outage of the aggregator, once it has caught up (on AWS: its IteratorAge
  is back near zero). Run while events are still queued in the stream, a repair would count
  them before the stream does.
* **backfill** counts, once, the events that a subscription starting in the past predates:
  stored before the subscription existed and timestamped before it. The stream counts every
  other event (`counted_by_stream`), so the two never count the same event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from meterbill.billing import plan_features
from meterbill.catalog import get_customer, get_plan, get_subscription
from meterbill.counters import CounterState
from meterbill.metering import contribution, matches, quantity_of
from meterbill.models import AggregationType, Feature, StoredEvent, Subscription
from meterbill.periods import Period, format_instant
from meterbill.storage import CounterKey, Store
from meterbill.values import canonical_text

__all__ = ["Difference", "backfill_subscription", "counted_by_stream", "reconcile_customer"]


@dataclass(frozen=True)
class Difference:
    subscription_id: str
    period_start: datetime
    period_end: datetime
    feature_id: str
    counted: Decimal
    recounted: Decimal
    repaired: bool


@dataclass
class _Tally:
    quantity: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    count: Decimal = Decimal(0)
    max: Decimal | None = None
    min: Decimal | None = None
    latest: tuple[str, Decimal] | None = None
    values: dict[str, StoredEvent] = field(default_factory=dict)

    def state(self) -> CounterState:
        return CounterState(
            quantity=self.quantity,
            total=self.total,
            count=self.count,
            max=self.max,
            min=self.min,
            latest=None if self.latest is None else self.latest[1],
            latest_order=None if self.latest is None else self.latest[0],
        )


def counted_by_stream(subscription: Subscription, event: StoredEvent) -> bool:
    """Whether the stream counts this event for this subscription; backfill counts the rest."""
    return (
        event.received_at >= subscription.created_at or event.timestamp >= subscription.created_at
    )


def reconcile_customer(
    store: Store,
    tenant_id: str,
    customer_id: str,
    at: datetime,
    repair: bool = False,
) -> list[Difference]:
    """Recount the period holding `at` of every subscription of a customer."""
    customer = get_customer(store, tenant_id, customer_id)
    differences = []
    for subscription in store.list_customer_subscriptions(tenant_id, customer.id):
        period = _period(subscription, at)
        if period is None:
            continue
        features = list(
            plan_features(
                store, tenant_id, get_plan(store, tenant_id, subscription.plan_id)
            ).values()
        )
        events = store.customer_events_between(
            tenant_id, customer.external_id, period.start, period.end
        )
        tallies = _tally(subscription, features, period, events)
        for feature in features:
            key = CounterKey(tenant_id, feature.id, period.start, period.end, subscription.id)
            tally = tallies.get(feature.id, _Tally())
            stored = store.read_counter(key)
            counted = quantity_of(feature, None if stored is None else stored[0])
            recounted = quantity_of(feature, tally.state())
            if counted == recounted:
                continue
            repaired = repair and _repair(store, key, feature, tally, stored)
            differences.append(
                Difference(
                    subscription.id,
                    period.start,
                    period.end,
                    feature.id,
                    counted,
                    recounted,
                    repaired,
                )
            )
    return differences


def backfill_subscription(store: Store, tenant_id: str, subscription_id: str) -> int:
    """Count once the stored events a backdated subscription predates; the number counted."""
    subscription = get_subscription(store, tenant_id, subscription_id)
    if subscription.start_date >= subscription.created_at:
        return 0
    features = list(
        plan_features(store, tenant_id, get_plan(store, tenant_id, subscription.plan_id)).values()
    )
    events = [
        event
        for event in store.customer_events_between(
            tenant_id,
            subscription.external_customer_id,
            subscription.start_date,
            subscription.created_at,
        )
        if not counted_by_stream(subscription, event)
    ]
    for period in _periods_of(subscription, events):
        tallies = _tally(subscription, features, period, events)
        for feature in features:
            tally = tallies.get(feature.id)
            if tally is None:
                continue
            key = CounterKey(tenant_id, feature.id, period.start, period.end, subscription.id)
            _apply_backfill(store, key, feature, tally, subscription.id)
    return len(events)


def _tally(
    subscription: Subscription,
    features: list[Feature],
    period: Period,
    events: Iterable[StoredEvent],
) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = {}
    for event in events:
        if not period.contains(event.timestamp):
            continue
        if subscription.ended_at is not None and event.timestamp >= subscription.ended_at:
            continue
        for feature in features:
            if not matches(feature, event.event_name, event.properties):
                continue
            amount = contribution(feature, event.properties)
            if amount is None:
                continue
            _add(tallies.setdefault(feature.id, _Tally()), feature, event, amount)
    return tallies


def _add(tally: _Tally, feature: Feature, event: StoredEvent, amount: Decimal) -> None:
    kind = feature.aggregation.type
    if kind in (AggregationType.SUM, AggregationType.COUNT):
        tally.quantity += amount
    elif kind is AggregationType.AVG:
        tally.total += amount
        tally.count += 1
    elif kind is AggregationType.MAX:
        tally.max = amount if tally.max is None else max(tally.max, amount)
    elif kind is AggregationType.MIN:
        tally.min = amount if tally.min is None else min(tally.min, amount)
    elif kind is AggregationType.LATEST:
        order = f"{event.timestamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{event.event_id}"
        if tally.latest is None or order > tally.latest[0]:
            tally.latest = (order, amount)
    else:
        text = canonical_text(event.properties[feature.aggregation.field or ""])
        earliest = tally.values.get(text)
        if earliest is None or (event.received_at, event.event_id) < (
            earliest.received_at,
            earliest.event_id,
        ):
            tally.values[text] = event
        tally.quantity = Decimal(len(tally.values))


def _repair(
    store: Store,
    key: CounterKey,
    feature: Feature,
    tally: _Tally,
    stored: tuple[CounterState, dict[str, object]] | None,
) -> bool:
    if feature.aggregation.type is AggregationType.UNIQUE_COUNT:
        for text in tally.values:
            store.claim_unique(key, text, f"reconcile:{_digest(text)}")
    return store.rewrite_counter(key, tally.state(), None if stored is None else dict(stored[1]))


def _apply_backfill(
    store: Store, key: CounterKey, feature: Feature, tally: _Tally, guard: str
) -> None:
    kind = feature.aggregation.type
    if kind is AggregationType.UNIQUE_COUNT:
        owned = sum(
            store.claim_unique(key, text, f"backfill:{event.event_id}")
            for text, event in tally.values.items()
        )
        store.add_backfill(key, CounterState(quantity=Decimal(owned)), guard)
    elif kind is AggregationType.MAX and tally.max is not None:
        store.raise_extreme(key, "max", tally.max)
    elif kind is AggregationType.MIN and tally.min is not None:
        store.raise_extreme(key, "min", tally.min)
    elif kind is AggregationType.LATEST and tally.latest is not None:
        order, value = tally.latest
        at, event_id = order.split("#", 1)
        store.advance_latest(key, datetime.fromisoformat(at), event_id, value)
    else:
        store.add_backfill(key, tally.state(), guard)


def _periods_of(subscription: Subscription, events: list[StoredEvent]) -> list[Period]:
    periods: dict[datetime, Period] = {}
    for event in events:
        period = _period(subscription, event.timestamp)
        if period is not None:
            periods[period.start] = period
    return [periods[start] for start in sorted(periods)]


def _period(subscription: Subscription, at: datetime) -> Period | None:
    return subscription.period_at(at)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(difference: Difference) -> str:
    return (
        f"{difference.subscription_id} {format_instant(difference.period_start)} "
        f"{difference.feature_id}: counted {difference.counted}, recounted {difference.recounted}"
        + (" (repaired)" if difference.repaired else "")
    )
