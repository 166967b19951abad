"""A daily plan to close periods of, and the hourly close as AWS runs it.

The plan charges a flat fee of 10.00 a day and 1.00 per 1,000 o1 input tokens. Subscriptions
start in the past (`started`), so that whole periods have ended by the real now: ingest refuses
events from the future, but the close takes its `now` from the scheduler's event, so a test can
close any period it likes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from meterbill.periods import format_instant
from tests.conftest import Handler, lambda_context
from tests.handlers.api import TENANT, Api
from tests.handlers.scenario import O1_CUSTOMER, token_feature

DAY = timedelta(days=1)
# After a period's end, the close waits this long for late events (the default setting).
GRACE = timedelta(hours=1)
FLAT_FEE = "10.00"


@dataclass(frozen=True)
class Daily:
    subscription_id: str
    customer_id: str
    started: datetime

    def period(self, index: int) -> tuple[datetime, datetime]:
        """Start and end of the subscription's period number `index` (0 is the first)."""
        start = self.started + index * DAY
        return start, start + DAY

    def due(self, index: int) -> datetime:
        """A moment when period `index` is due to be invoiced, and the next one is not."""
        return self.period(index)[1] + GRACE + timedelta(minutes=30)


def two_days_and_two_hours_ago() -> datetime:
    """A start date for which periods 0 and 1 have ended and period 2 runs until in 22 hours."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=2, hours=2)


def rfc3339(instant: datetime) -> str:
    return format_instant(instant)


def daily_plan(catalog_api: Api, tenant: str = TENANT, flat_fee: str = FLAT_FEE) -> str:
    """The tenant's daily plan (and its input tokens feature); the plan id."""
    feature = catalog_api.post("/v1/features", token_feature("input"), tenant=tenant)
    if feature.status == 409:
        listed = catalog_api.get("/v1/features", tenant=tenant).body["items"]
        feature_id = next(f["id"] for f in listed if f["lookup_key"] == "o1-input-tokens")
    else:
        assert feature.status == 201, feature.body
        feature_id = feature.body["id"]
    plan = catalog_api.post(
        "/v1/plans",
        {
            "name": "Daily",
            "lookup_key": f"daily-{flat_fee}",
            "currency": "USD",
            "billing_period": "DAILY",
            "prices": [
                {"billing_model": "FLAT_FEE", "amount": flat_fee},
                {
                    "feature_id": feature_id,
                    "billing_model": "PER_UNIT",
                    "amount": "1.00",
                    "per": "1000",
                },
            ],
        },
        tenant=tenant,
    )
    assert plan.status == 201, plan.body
    plan_id: str = plan.body["id"]
    return plan_id


def subscribe_daily(
    catalog_api: Api,
    plan_id: str,
    started: datetime,
    customer: str = O1_CUSTOMER,
    tenant: str = TENANT,
) -> Daily:
    """Subscribe `customer` (created unless it exists) to the daily plan from `started`."""
    created = catalog_api.post(
        "/v1/customers", {"external_id": customer, "name": customer}, tenant=tenant
    )
    assert created.status in (201, 409), created.body
    subscription = catalog_api.post(
        "/v1/subscriptions",
        {"external_customer_id": customer, "plan_id": plan_id, "start_date": rfc3339(started)},
        tenant=tenant,
    )
    assert subscription.status == 201, subscription.body
    return Daily(subscription.body["id"], subscription.body["customer_id"], started)


class Closer:
    """The scheduled close: the scheduler function queues what is due at `now` on the close
    queue (SQS in moto), and the worker function gets the queued messages in batches of ten.

    Messages the worker reports as failed become visible again, the way SQS redelivers them,
    and are retried by the next `close` or `redeliver`.
    """

    def __init__(self, scheduler: Handler, worker: Handler, queue_url: str) -> None:
        self._scheduler = scheduler
        self._worker = worker
        self._queue_url = queue_url
        self._sqs = boto3.client("sqs")

    def close(self, now: datetime) -> list[str]:
        """Run the scheduler at `now`, then the worker; the failed message ids."""
        self._scheduler({"now": rfc3339(now)}, lambda_context("close-scheduler"))
        return self.redeliver()

    def redeliver(self) -> list[str]:
        """Hand every visible message to the worker once; the failed message ids."""
        messages = []
        while batch := self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30
        ).get("Messages", []):
            messages.extend(batch)
        failed: list[str] = []
        for start in range(0, len(messages), 10):
            failed.extend(self._deliver(messages[start : start + 10]))
        for message in messages:
            if message["MessageId"] in failed:
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
        return failed

    def send(self, tenant_id: str, subscription_id: str, now: datetime) -> list[str]:
        """Give the worker one message of the kind the scheduler queues; the failed ids."""
        body = json.dumps(
            {"tenant_id": tenant_id, "subscription_id": subscription_id, "now": rfc3339(now)}
        )
        message = {"MessageId": hashlib.sha256(body.encode()).hexdigest()[:32], "Body": body}
        answer = self._worker({"Records": [_sqs_record(message)]}, lambda_context("close-worker"))
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    def _deliver(self, messages: list[dict[str, Any]]) -> list[str]:
        event = {"Records": [_sqs_record(message) for message in messages]}
        answer = self._worker(event, lambda_context("close-worker"))
        failed = [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]
        for message in messages:
            if message["MessageId"] not in failed:
                self._sqs.delete_message(
                    QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return failed


def _sqs_record(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message.get("ReceiptHandle", "handle"),
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:CloseQueue",
        "awsRegion": "us-east-1",
    }
