"""The counted figures: write units, requests and read units, from the requests actually sent.

Every scenario runs in its own `Deployment` and is warmed first, so that it measures a busy
period rather than a first request: the aggregator has cached the plan and features, and every
counter already carries a watermark for each of the 16 events lanes (its steady-state size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from meterbill import billing
from tests.bench.capacity import Usage
from tests.bench.deployment import Deployment
from tests.bench.workload import (
    busy_at,
    create_catalog,
    expected_quantities,
    lane_covering_events,
    usage_events,
)

__all__ = ["InvoiceReads", "WriteCost", "measure_invoice_reads", "measure_write_costs"]

# Events sent per bulk size: ten requests, or 100 events when that is more. Every request of
# a size costs the same, so ten say as much as a thousand would.
REQUESTS_PER_SIZE = 10
MIN_EVENTS = 100
MAX_BULK = 1000


@dataclass(frozen=True)
class WriteCost:
    bulk: int
    features: int
    customers: int
    events: int
    ingest: Usage
    aggregator: Usage

    @property
    def write_units_per_event(self) -> float:
        return (self.ingest.write_units + self.aggregator.write_units) / self.events

    @property
    def ingest_requests_per_event(self) -> float:
        return self.ingest.requests / self.events

    @property
    def aggregator_requests_per_event(self) -> float:
        return self.aggregator.requests / self.events


@dataclass(frozen=True)
class InvoiceReads:
    features: int
    days: int
    events: int
    usage: Usage  # of the proposed invoice
    counting: Usage  # of the aggregator, counting the events in batches of the template's size


def measure_write_costs(
    features: int, customers: int, bulk_sizes: Sequence[int] = (1, 10, 100, 1000)
) -> list[WriteCost]:
    """Send each bulk size in turn; after every request the aggregator gets the request's
    events as one stream batch (what a quiet stream does; a busy one fills batches up to the
    template's batch size, as the 1000-event bulks show)."""
    costs = []
    at = busy_at(datetime.now(UTC))
    with Deployment() as deployment:
        names = [f"customer-{c:03d}" for c in range(customers)]
        with deployment.meter.phase("setup"):
            created = create_catalog(
                deployment.store, deployment.tenant_id, features, names, at - timedelta(days=2)
            )
        deployment.skip_stream()
        _warm_up(deployment, names, at)

        for bulk in bulk_sizes:
            deployment.meter.reset()
            count = max(bulk, min(MIN_EVENTS, REQUESTS_PER_SIZE * bulk))
            events = usage_events(f"bulk{bulk}", count, created.customers, at)
            for start in range(0, len(events), bulk):
                deployment.post_bulk(events[start : start + bulk])
                deployment.deliver_stream()
            _check_meter(deployment)
            costs.append(
                WriteCost(
                    bulk=bulk,
                    features=features,
                    customers=customers,
                    events=len(events),
                    ingest=deployment.meter.usage("ingest"),
                    aggregator=deployment.meter.usage("aggregator"),
                )
            )
    return costs


def measure_invoice_reads(
    features: int, shapes: Sequence[tuple[int, int]] = ((1, 100), (31, 100))
) -> list[InvoiceReads]:
    """Read units of one proposed invoice per (days of usage, events) shape, each shape on its
    own customer; checks the invoice counted every event.

    The plan is quarterly so that 31 days of usage, all younger than the 35-day backdating
    limit, fall in the current period whatever the date.
    """
    reads = []
    now = datetime.now(UTC)
    period_start = now - timedelta(days=33)
    first = busy_at(period_start + timedelta(days=1))
    with Deployment() as deployment:
        names = [f"days{days}-events{count}" for days, count in shapes]
        with deployment.meter.phase("setup"):
            created = create_catalog(
                deployment.store, deployment.tenant_id, features, names, period_start, "QUARTERLY"
            )
        deployment.skip_stream()
        for (days, count), name in zip(shapes, names, strict=True):
            events = usage_events(name, count, [name], first, days)
            for offset in range(0, count, MAX_BULK):
                deployment.post_bulk(events[offset : offset + MAX_BULK])
            deployment.meter.reset()
            deployment.deliver_stream()
            counting = deployment.meter.usage("aggregator")

            deployment.meter.reset()
            with deployment.meter.phase("billing"):
                invoice = billing.proposed_invoice(
                    deployment.store,
                    deployment.tenant_id,
                    created.subscriptions[name].id,
                    now=now,
                )
            _check_meter(deployment)
            quantities = {line.feature_id: line.quantity for line in invoice.line_items}
            if quantities != expected_quantities(created.features, events):
                raise AssertionError(f"the invoice did not count every event: {quantities}")
            usage = deployment.meter.usage("billing")
            reads.append(InvoiceReads(features, days, count, usage, counting))
    return reads


def _warm_up(deployment: Deployment, customers: list[str], at: datetime) -> None:
    events = [e for name in customers for e in lane_covering_events("warm", name, at)]
    for start in range(0, len(events), MAX_BULK):
        deployment.post_bulk(events[start : start + MAX_BULK])
    # One batch however many events: the warm-up is not measured, and moto is slow per batch.
    deployment.deliver_stream(batch_size=len(events))


def _check_meter(deployment: Deployment) -> None:
    meter = deployment.meter
    if meter.unmetered or meter.errors:
        raise AssertionError(f"unpriced requests: {meter.unmetered}, errors: {meter.errors}")
