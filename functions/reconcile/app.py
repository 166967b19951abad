"""Recount a customer's usage from raw events; report differences and repair on request.

Invoked directly (console, CLI, a runbook), not through the API:
`{"tenant_id": "acme", "customer_id": "cus_...", "at": "2026-11-15T00:00:00Z"?, "repair": false}`.
"""

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill.http import logger
from meterbill.periods import parse_instant
from meterbill.recount import describe, reconcile_customer
from meterbill.runtime import store


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    tenant_id = str(event["tenant_id"])
    logger.append_keys(tenant_id=tenant_id)
    at = parse_instant(event["at"]) if event.get("at") else datetime.now(UTC)
    differences = reconcile_customer(
        store(), tenant_id, str(event["customer_id"]), at, repair=bool(event.get("repair"))
    )
    logger.info("reconciled", extra={"differences": len(differences)})
    return {"differences": [describe(d) for d in differences]}
