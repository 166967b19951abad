"""Ingest: validate usage events, then store each one durably, deduplicated by event id.

A request is all or nothing at validation: one invalid event rejects the whole batch before
anything is written. Writes are conditional puts keyed by tenant and event id, so a duplicate
(in the same request, another request or a retry) is acknowledged and ignored. If any write
fails the caller gets an error, never an acknowledgement, and may resend the whole request.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from meterbill.errors import ValidationFailed
from meterbill.ids import random_id
from meterbill.metering import missing_values
from meterbill.models import EventRequest, Feature, StoredEvent
from meterbill.periods import parse_instant
from meterbill.storage import Store
from meterbill.validation import error_details

__all__ = ["FUTURE_TOLERANCE", "IngestResult", "ingest_events", "validate_events"]

FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class IngestResult:
    event_ids: list[str]
    accepted: int
    duplicates: int


def ingest_events(
    store: Store,
    tenant_id: str,
    raw_events: Sequence[Any],
    field_prefix: str,
    concurrency: int = 1,
    now: datetime | None = None,
) -> IngestResult:
    received_at = now or datetime.now(UTC)
    features = store.list_features(tenant_id)
    requests = validate_events(raw_events, features, field_prefix)
    events = [_stored_event(tenant_id, request, received_at) for request in requests]
    _check_time_window(events, store.get_settings(tenant_id).backdating_limit_days, field_prefix)

    if concurrency > 1 and len(events) > 1:
        stored = list(_writers(concurrency).map(store.put_event, events))
    else:
        stored = [store.put_event(event) for event in events]

    accepted = sum(stored)
    return IngestResult(
        event_ids=[event.event_id for event in events],
        accepted=accepted,
        duplicates=len(events) - accepted,
    )


@lru_cache(maxsize=1)
def _writers(concurrency: int) -> ThreadPoolExecutor:
    """One pool for the life of the function: starting threads per request costs more CPU
    than the writes they make."""
    return ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ingest-writer")


def validate_events(
    raw_events: Sequence[Any], features: Sequence[Feature], field_prefix: str
) -> list[EventRequest]:
    """Parse every event; raise one error listing each invalid event by index."""
    requests: list[EventRequest] = []
    details: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        prefix = f"{field_prefix}{index}." if field_prefix else ""
        try:
            request = EventRequest.model_validate(raw)
        except ValidationError as exc:
            details.extend({"index": index, **d} for d in error_details(exc, prefix))
            continue
        for problem in missing_values(features, request.event_name, request.properties):
            field = f"{prefix}properties.{problem.property_name}"
            details.append({"index": index, "field": field, "message": problem.sentence()})
        requests.append(request)

    if details:
        first = details[0]
        count = len({d["index"] for d in details})
        summary = f"{first['field']}: {first['message']}"
        if field_prefix:
            summary = f"{count} of {len(raw_events)} events are invalid, none was stored; {summary}"
        for detail in details:
            if not field_prefix:
                detail.pop("index")
        raise ValidationFailed(summary, details)
    return requests


def _check_time_window(events: Sequence[StoredEvent], limit_days: int, field_prefix: str) -> None:
    """Refuse events too old to bill (their period is long invoiced) or from the future.

    Limits as Stripe's meter events: the backdating limit (35 days by default, per tenant) and
    five minutes ahead, for clock skew.
    """
    details = []
    for index, event in enumerate(events):
        prefix = f"{field_prefix}{index}." if field_prefix else ""
        if event.timestamp < event.received_at - timedelta(days=limit_days):
            reason = f"is more than {limit_days} days in the past, beyond the backdating limit"
        elif event.timestamp > event.received_at + FUTURE_TOLERANCE:
            reason = "is more than 5 minutes in the future"
        else:
            continue
        detail = {"field": f"{prefix}timestamp", "message": reason}
        details.append({"index": index, **detail} if field_prefix else detail)
    if details:
        first = details[0]
        raise ValidationFailed(f"{first['field']} {first['message']}; nothing was stored", details)


def _stored_event(tenant_id: str, request: EventRequest, received_at: datetime) -> StoredEvent:
    return StoredEvent(
        tenant_id=tenant_id,
        event_id=request.event_id or random_id("evt"),
        event_name=request.event_name,
        external_customer_id=request.external_customer_id,
        timestamp=parse_instant(request.timestamp) if request.timestamp else received_at,
        properties=request.properties,
        source=request.source,
        customer_id=request.customer_id,
        received_at=received_at,
    )
