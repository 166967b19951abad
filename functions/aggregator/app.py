"""Stream consumer: turns newly stored events into usage counter updates.

Answers with partial batch failures: Lambda retries from the lowest failed sequence number, and
the counters' per-lane watermarks make the records already added count once.
"""

from collections import Counter
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill.aggregation import CatalogCache, aggregate_batch, parse_stream_records
from meterbill.http import logger
from meterbill.runtime import store

_cache: CatalogCache | None = None


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _cache
    if _cache is None:
        _cache = CatalogCache(store())

    events = parse_stream_records(event.get("Records", []))
    failed = aggregate_batch(store(), _cache, events)
    for tenant, count in Counter(e.event.tenant_id for e in events).items():
        logger.info("stream batch aggregated", extra={"tenant_id": tenant, "events": count})
    if failed:
        logger.warning("stream records will be retried", extra={"failed": len(failed)})
    if not failed:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": min(failed, key=int)}]}
