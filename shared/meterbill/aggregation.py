"""The aggregator: from a DynamoDB Streams batch of new events to usage counter updates.

For each customer in the batch it follows the customer's subscriptions to their plans' usage
prices, finds the period of each event and adds every matching event to the counter of
(subscription, period, feature). Contributions are summed over the whole batch, so a counter
gets one write per batch however many events it absorbs.

Redelivery is safe: records are grouped by the events partition ("lane") they came from, whose
records DynamoDB Streams delivers in sequence order, and every counter keeps the highest
sequence number it has added per lane (see `Store.add_to_counter`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from meterbill.catalog import customer_id_for
from meterbill.errors import StorageUnavailable
from meterbill.metering import contribution, matches
from meterbill.models import Feature, Plan, StoredEvent, Subscription
from meterbill.periods import Period, period_containing
from meterbill.storage import CounterDelta, Store, event_from_image, padded_sequence

__all__ = ["CatalogCache", "StreamEvent", "aggregate_batch", "parse_stream_records"]

logger = Logger(service="meterbill", child=True)


@dataclass(frozen=True)
class StreamEvent:
    """A new event as the stream delivered it."""

    sequence_number: str
    lane: str
    event: StoredEvent


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


def aggregate_batch(store: Store, cache: CatalogCache, events: list[StreamEvent]) -> list[str]:
    """Apply a batch; return the sequence numbers whose effect could not be stored."""
    failed: list[str] = []
    deltas: dict[tuple[str, str, datetime, str], CounterDelta] = {}
    owners: dict[tuple[str, str, datetime, str], list[str]] = defaultdict(list)

    for (tenant_id, external_id), customer_events in _by_customer(events).items():
        try:
            subscriptions = store.list_customer_subscriptions(
                tenant_id, customer_id_for(tenant_id, external_id)
            )
        except StorageUnavailable:
            failed.extend(e.sequence_number for e in customer_events)
            continue
        for subscription in subscriptions:
            try:
                priced = _priced_features(cache, tenant_id, subscription)
            except StorageUnavailable:
                failed.extend(e.sequence_number for e in customer_events)
                continue
            _collect(subscription, priced, customer_events, deltas, owners)

    for key, delta in deltas.items():
        try:
            store.add_to_counter(delta)
        except StorageUnavailable:
            logger.warning("usage counter update failed", extra={"counter": str(key)})
            failed.extend(owners[key])
    return failed


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
    subscription: Subscription,
    features: list[Feature],
    events: list[StreamEvent],
    deltas: dict[tuple[str, str, datetime, str], CounterDelta],
    owners: dict[tuple[str, str, datetime, str], list[str]],
) -> None:
    tenant_id = events[0].event.tenant_id
    period: Period | None = None
    for stream_event in events:
        event = stream_event.event
        # Most events of a batch share a period: reuse it rather than redo calendar arithmetic.
        if period is None or not period.contains(event.timestamp):
            period = period_containing(
                subscription.start_date,
                subscription.billing_period,
                subscription.billing_period_count,
                event.timestamp,
            )
        if period is None:
            continue
        for feature in features:
            if not matches(feature, event.event_name, event.properties):
                continue
            amount = contribution(feature, event.properties)
            if amount is None:
                # Ingest rejects these; one can only arrive if the feature was created after
                # the event was accepted. Counting it as zero would hide that, so say it.
                logger.warning(
                    "event lacks the value its feature sums",
                    extra={"event_id": event.event_id, "feature_id": feature.id},
                )
                continue
            key = (tenant_id, subscription.id, period.start, feature.id)
            delta = deltas.get(key)
            if delta is None:
                delta = deltas[key] = CounterDelta(
                    tenant_id=tenant_id,
                    subscription_id=subscription.id,
                    feature_id=feature.id,
                    period_start=period.start,
                    period_end=period.end,
                    contributions=defaultdict(list),
                )
            delta.contributions[stream_event.lane].append(
                (padded_sequence(stream_event.sequence_number), amount)
            )
            owners[key].append(stream_event.sequence_number)
