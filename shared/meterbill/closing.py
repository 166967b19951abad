"""The scheduled close: the due index fans out to a queue, workers invoice each subscription."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from meterbill.errors import MeterbillError
from meterbill.invoicing import close_due_periods
from meterbill.notifications import EventPublisher
from meterbill.periods import format_instant, parse_instant
from meterbill.queues import CloseQueue
from meterbill.recount import backfill_subscription
from meterbill.storage import DUE_SHARDS, Store

__all__ = ["close_queued", "queue_due_subscriptions"]

logger = Logger(service="meterbill", child=True)


def queue_due_subscriptions(store: Store, now: datetime, queue: CloseQueue | None = None) -> int:
    """Queue every subscription due by `now`; the count queued."""
    queue = queue or CloseQueue.from_environment()
    queued = 0
    batch: list[dict[str, str]] = []
    for shard in range(DUE_SHARDS):
        for tenant_id, subscription_id in store.due_subscriptions(shard, now):
            batch.append(
                {
                    "tenant_id": tenant_id,
                    "subscription_id": subscription_id,
                    "now": format_instant(now),
                }
            )
            if len(batch) == CloseQueue.BATCH:
                queued += queue.send(batch)
                batch = []
    if batch:
        queued += queue.send(batch)
    return queued


def close_queued(
    store: Store, publisher: EventPublisher, records: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Close each queued subscription; the message ids that failed and must be retried."""
    failed = []
    for record in records:
        message = json.loads(record["body"])
        tenant_id = message["tenant_id"]
        # Every line of this message names its tenant, the invoice events' lines included.
        logger.append_keys(tenant_id=tenant_id)
        now = parse_instant(message["now"]) if message.get("now") else datetime.now(UTC)
        try:
            if message.get("kind") == "backfill":
                counted = backfill_subscription(store, tenant_id, message["subscription_id"])
                logger.info("backfill done", extra={"tenant_id": tenant_id, "events": counted})
                continue
            invoices = close_due_periods(
                store, publisher, tenant_id, message["subscription_id"], now
            )
        except MeterbillError as exc:
            logger.warning(
                "close failed; the message will be retried",
                extra={"tenant_id": tenant_id, "code": exc.code, "error": exc.message},
            )
            failed.append(str(record["messageId"]))
            continue
        logger.info(
            "subscription closed", extra={"tenant_id": tenant_id, "invoices": len(invoices)}
        )
    return failed
