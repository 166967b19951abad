"""Hourly: queue every subscription whose open period is due to be invoiced.

Pages through the due index (never a scan) and fans out over SQS, ten messages a request.
An optional `now` in the event (ISO 8601) lets the local runtime travel in time.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill.closing import queue_due_subscriptions
from meterbill.http import logger
from meterbill.periods import parse_instant
from meterbill.runtime import store


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = parse_instant(event["now"]) if event.get("now") else datetime.now(UTC)
    queued = queue_due_subscriptions(store(), now)
    logger.info("due subscriptions queued", extra={"queued": queued, "now": now.isoformat()})
    return {"queued": queued}
