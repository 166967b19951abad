"""Invoice events out: EventBridge on AWS, the log on a laptop.

Events are published at least once: a close retried after a crash may publish the same
`invoice.finalized` again, so consumers deduplicate by invoice id and detail type.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from meterbill.errors import StorageUnavailable
from meterbill.models import Invoice

__all__ = ["EventPublisher"]

logger = Logger(service="meterbill", child=True)
SOURCE = "meterbill"


class EventPublisher:
    """Publishes `invoice.finalized` and `invoice.voided` to a bus, or logs them without one."""

    def __init__(self, bus_name: str | None, client: Any | None = None) -> None:
        self.bus_name = bus_name or None
        self._client = client

    def publish(self, detail_type: str, invoice: Invoice) -> None:
        detail = invoice.model_dump(mode="json")
        if self.bus_name is None:
            logger.info(
                "invoice event",
                extra={"detail_type": detail_type, "invoice_id": invoice.id, "detail": detail},
            )
            return
        entry = {
            "Source": SOURCE,
            "DetailType": detail_type,
            "Detail": json.dumps(detail),
            "EventBusName": self.bus_name,
        }
        try:
            response = self._events().put_events(Entries=[entry])
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"could not publish {detail_type}: {exc}") from exc
        if response.get("FailedEntryCount"):
            raise StorageUnavailable(f"EventBridge refused {detail_type} for {invoice.id}")

    def _events(self) -> Any:
        if self._client is None:
            self._client = boto3.client("events")
        return self._client
