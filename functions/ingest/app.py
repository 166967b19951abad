"""Ingest API: single and bulk usage events, answered 202 only once every event is stored."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill.http import create_resolver, json_body, logger, parse, respond, tenant_id
from meterbill.ingest import ingest_events
from meterbill.models import BulkEventsRequest
from meterbill.ratelimit import enforce_rate_limit
from meterbill.runtime import store
from meterbill.settings import settings

app = create_resolver()


@app.post("/v1/events")
def ingest_event() -> Response[str]:
    tenant = _admitted_tenant()
    result = ingest_events(store(), tenant, [json_body(app)], field_prefix="")
    message = "Event accepted for processing" if result.accepted else "Duplicate event ignored"
    return respond(202, {"event_id": result.event_ids[0], "message": message})


@app.post("/v1/events/bulk")
def ingest_bulk() -> Response[str]:
    tenant = _admitted_tenant()
    request = parse(BulkEventsRequest, json_body(app))
    result = ingest_events(
        store(),
        tenant,
        request.events,
        field_prefix="events.",
        concurrency=settings().ingest_write_concurrency,
    )
    logger.info(
        "events ingested", extra={"accepted": result.accepted, "duplicates": result.duplicates}
    )
    return respond(
        202,
        {
            "message": "Events accepted for processing",
            "accepted": str(result.accepted),
            "duplicates": str(result.duplicates),
        },
    )


def _admitted_tenant() -> str:
    tenant = tenant_id(app)
    enforce_rate_limit(store(), tenant, settings().ingest_rate_limit)
    return tenant


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
