"""SQS worker: invoices the due periods of each queued subscription.

Reports partial batch failures, so one failing subscription is retried alone; closing is
idempotent, so a retried or duplicated message invoices nothing twice.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill.closing import close_queued
from meterbill.http import logger
from meterbill.runtime import publisher, store


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = close_queued(store(), publisher(), event.get("Records", []))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
