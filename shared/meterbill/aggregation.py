"""The aggregator: from a DynamoDB Streams batch of new events to usage counter updates.

For each customer in the batch it follows the customer's subscriptions to their plans' usage
prices, finds the period of each event and feeds every matching event to the counter of
(subscription, period, feature), and to the customer's time-window counters for charts.
Contributions are combined over the whole batch, so a counter gets one write per batch however
many events it absorbs. By aggregation:

* SUM, COUNT: one sum (`quantity`); AVG: two sums (`total`, `count`), divided when read.
* MAX, MIN: a conditional SET that only ever raises (lowers) the value.
* LATEST: a conditional SET ordered by (timestamp, event id).
* UNIQUE_COUNT: one marker item per distinct value, claimed by the first record that brings it;
  only the claiming record adds 1 to `quantity`.

Redelivery is safe: records are grouped by the events partition ("lane") they came from, whose
records DynamoDB Streams delivers in sequence order, and every counter keeps the highest
sequence number it has added per lane (see `Store.add_to_counter`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from aws_lambda_powertools import Logger

from meterbill.catalog import customer_id_for
from meterbill.errors import StorageUnavailable
from meterbill.metering import contribution, matches
from meterbill.models import AggregationType, Feature, Plan, StoredEvent, Subscription
from meterbill.periods import Period
from meterbill.recount import counted_by_stream
from meterbill.storage import CounterDelta, CounterKey, Store, event_from_image, padded_sequence
from meterbill.values import canonical_text
from meterbill.windows import BUCKET, Window, bucket_start, window_bounds

__all__ = ["CatalogCache", "StreamEvent", "aggregate_batch", "parse_stream_records"]

logger = Logger(service="meterbill", child=True)


@dataclass(frozen=True)
class StreamEvent:
    """A new event as the stream delivered it."""

    sequence_number: str
    lane: str
    event: StoredEvent

    @property
    def padded_sequence(self) -> str:
        return padded_sequence(self.sequence_number)


class CatalogCache:
    """Plans and features never change once created, so a warm function keeps them.

    Only found objects are kept: a miss is asked again next time.
    """

    _LIMIT = 5_000

    def __init__(self, store: Store) -> None:
        self._store = store
        self._plans: dict[tuple[str, str], Plan] = {}
        self._features: dict[tuple[str, str], Feature] = {}

    def plan(self, tenant_id: str, plan_id: str) -> Plan | None:
        key = (tenant_id, plan_id)
        if key not in self._plans:
            plan = self._store.get_plan(tenant_id, plan_id)
            if plan is None:
                return None
            self._bound(self._plans)
            self._plans[key] = plan
        return self._plans[key]

    def feature(self, tenant_id: str, feature_id: str) -> Feature | None:
        key = (tenant_id, feature_id)
        if key not in self._features:
            feature = self._store.get_feature(tenant_id, feature_id)
            if feature is None:
                return None
            self._bound(self._features)
            self._features[key] = feature
        return self._features[key]

    def _bound(self, cache: dict[Any, Any]) -> None:
        if len(cache) >= self._LIMIT:
            cache.clear()


def parse_stream_records(records: Iterable[Mapping[str, Any]]) -> list[StreamEvent]:
    """New events in a stream batch; other records (counters, catalog, updates) are skipped."""
    events = []
    for record in records:
        if record.get("eventName") != "INSERT":
            continue
        change = record.get("dynamodb", {})
        event = event_from_image(change.get("NewImage", {}))
        if event is None:
            continue
        partition = change["Keys"]["pk"]["S"]
        events.append(
            StreamEvent(
                sequence_number=change["SequenceNumber"],
                lane=partition.rsplit("#", 1)[-1],
                event=event,
            )
        )
    return events


class _BatchUpdates:
    """Everything a batch will write, combined per counter."""

    def __init__(self) -> None:
        self.sums: dict[tuple[CounterKey, str], CounterDelta] = {}
        self.extremes: dict[tuple[CounterKey, str], Decimal] = {}
        self.latest: dict[CounterKey, tuple[datetime, str, Decimal]] = {}
        self.uniques: dict[tuple[CounterKey, str], StreamEvent] = {}
        self.owners: dict[CounterKey, list[str]] = defaultdict(list)

    def count(self, key: CounterKey, feature: Feature, record: StreamEvent) -> None:
        """Feed one matching event to one counter, by the feature's aggregation."""
        event = record.event
        kind = feature.aggregation.type
        self.owners[key].append(record.sequence_number)
        if kind is AggregationType.UNIQUE_COUNT:
            value_text = canonical_text(event.properties[feature.aggregation.field or ""])
            earlier = self.uniques.get((key, value_text))
            if earlier is None or int(record.sequence_number) < int(earlier.sequence_number):
                self.uniques[(key, value_text)] = record
            return

        amount = contribution(feature, event.properties)
        assert amount is not None
        if kind in (AggregationType.SUM, AggregationType.COUNT):
            self._add(key, "quantity", record, amount)
        elif kind is AggregationType.AVG:
            self._add(key, "total", record, amount)
            self._add(key, "count", record, Decimal(1))
        elif kind is AggregationType.LATEST:
            current = self.latest.get(key)
            if current is None or (event.timestamp, event.event_id) > current[:2]:
                self.latest[key] = (event.timestamp, event.event_id, amount)
        else:
            attribute = "max" if kind is AggregationType.MAX else "min"
            current_extreme = self.extremes.get((key, attribute))
            better = max if kind is AggregationType.MAX else min
            self.extremes[(key, attribute)] = (
                amount if current_extreme is None else better(current_extreme, amount)
            )

    def add_claimed(self, key: CounterKey, record: StreamEvent) -> None:
        self._add(key, "quantity", record, Decimal(1))

    def _add(self, key: CounterKey, attribute: str, record: StreamEvent, amount: Decimal) -> None:
        delta = self.sums.get((key, attribute))
        if delta is None:
            delta = self.sums[(key, attribute)] = CounterDelta(key, defaultdict(list), attribute)
        delta.contributions[record.lane].append((record.padded_sequence, amount))


def aggregate_batch(store: Store, cache: CatalogCache, events: list[StreamEvent]) -> list[str]:
    """Apply a batch; return the sequence numbers whose effect could not be stored."""
    failed: list[str] = []
    updates = _BatchUpdates()

    for (tenant_id, external_id), customer_events in _by_customer(events).items():
        customer_id = customer_id_for(tenant_id, external_id)
        try:
            subscriptions = store.list_customer_subscriptions(tenant_id, customer_id)
            priced = [(s, _priced_features(cache, tenant_id, s)) for s in subscriptions]
        except StorageUnavailable:
            failed.extend(e.sequence_number for e in customer_events)
            continue
        _collect(customer_id, priced, customer_events, updates)

    failed.extend(_claim_uniques(store, updates))
    failed.extend(_write(store, updates))
    return failed


def _claim_uniques(store: Store, updates: _BatchUpdates) -> list[str]:
    failed = []
    for (key, value_text), record in updates.uniques.items():
        claimant = f"{record.lane}:{record.sequence_number}"
        try:
            if store.claim_unique(key, value_text, claimant):
                updates.add_claimed(key, record)
        except StorageUnavailable:
            failed.extend(updates.owners[key])
    return failed


def _write(store: Store, updates: _BatchUpdates) -> list[str]:
    failed: list[str] = []
    for key, write in _writes(store, updates):
        try:
            write()
        except StorageUnavailable:
            logger.warning("usage counter update failed", extra={"counter": key.sk})
            failed.extend(updates.owners[key])
    return failed


def _writes(store: Store, updates: _BatchUpdates) -> list[tuple[CounterKey, Callable[[], None]]]:
    writes: list[tuple[CounterKey, Callable[[], None]]] = []
    for delta in updates.sums.values():
        writes.append((delta.key, partial(store.add_to_counter, delta)))
    for (key, attribute), value in updates.extremes.items():
        writes.append((key, partial(store.raise_extreme, key, attribute, value)))
    for key, (at, event_id, value) in updates.latest.items():
        writes.append((key, partial(store.advance_latest, key, at, event_id, value)))
    return writes


def _by_customer(events: list[StreamEvent]) -> dict[tuple[str, str], list[StreamEvent]]:
    grouped: dict[tuple[str, str], list[StreamEvent]] = defaultdict(list)
    for stream_event in events:
        event = stream_event.event
        grouped[(event.tenant_id, event.external_customer_id)].append(stream_event)
    return grouped


def _priced_features(
    cache: CatalogCache, tenant_id: str, subscription: Subscription
) -> list[Feature]:
    plan = cache.plan(tenant_id, subscription.plan_id)
    if plan is None:
        logger.warning("subscription names a missing plan", extra={"plan_id": subscription.plan_id})
        return []
    features = []
    for price in plan.prices:
        if price.feature_id is None:
            continue
        feature = cache.feature(tenant_id, price.feature_id)
        if feature is not None:
            features.append(feature)
    return features


def _collect(
    customer_id: str,
    priced: list[tuple[Subscription, list[Feature]]],
    events: list[StreamEvent],
    updates: _BatchUpdates,
) -> None:
    """Feed each event to its subscriptions' period counters and, once per feature, to the
    customer's window counters."""
    tenant_id = events[0].event.tenant_id
    for subscription, features in priced:
        period: Period | None = None
        for record in events:
            event = record.event
            # Most events of a batch share a period: reuse it rather than redo calendar work.
            if period is None or not period.contains(event.timestamp):
                period = subscription.period_at(event.timestamp)
            if period is None or _after_end(subscription, record):
                continue
            for feature in features:
                if not _countable(feature, record):
                    continue
                key = CounterKey(
                    tenant_id,
                    feature.id,
                    period.start,
                    period.end,
                    subscription_id=subscription.id,
                )
                updates.count(key, feature, record)

    windowed: set[tuple[str, str]] = set()
    for subscription, features in priced:
        zone = ZoneInfo(subscription.timezone)
        for record in events:
            if record.event.timestamp < subscription.start_date or _after_end(subscription, record):
                continue
            for feature in features:
                seen = (record.event.event_id, feature.id)
                if seen in windowed or not _countable(feature, record):
                    continue
                windowed.add(seen)
                for key in _window_keys(tenant_id, customer_id, feature, record.event, zone):
                    updates.count(key, feature, record)


def _after_end(subscription: Subscription, record: StreamEvent) -> bool:
    """Not for the stream to count: usage at or after a cancellation, and events a backdated
    subscription predates (the backfill counts those, once)."""
    if subscription.ended_at is not None and record.event.timestamp >= subscription.ended_at:
        return True
    return not counted_by_stream(subscription, record.event)


def _countable(feature: Feature, record: StreamEvent) -> bool:
    event = record.event
    if not matches(feature, event.event_name, event.properties):
        return False
    if contribution(feature, event.properties) is not None:
        return True
    # Ingest rejects these; one can only arrive if the feature was created after the event
    # was accepted. Counting it as zero would hide that, so say it.
    logger.warning(
        "event lacks the value its feature aggregates",
        extra={"event_id": event.event_id, "feature_id": feature.id},
    )
    return False


def _window_keys(
    tenant_id: str, customer_id: str, feature: Feature, event: StoredEvent, zone: ZoneInfo
) -> list[CounterKey]:
    """15-minute buckets combine into any local hour or day, except distinct counts, which are
    kept per local hour and per local day."""
    if feature.aggregation.type is AggregationType.UNIQUE_COUNT:
        keys = []
        for window, label in ((Window.HOUR, "H"), (Window.DAY, "D")):
            start, end = window_bounds(window, event.timestamp, zone)
            keys.append(
                CounterKey(tenant_id, feature.id, start, end, customer_id=customer_id, window=label)
            )
        return keys
    start = bucket_start(event.timestamp)
    return [
        CounterKey(
            tenant_id, feature.id, start, start + BUCKET, customer_id=customer_id, window="Q"
        )
    ]
