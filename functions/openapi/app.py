"""Serves the OpenAPI document; the only route without an API key."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill.http import create_resolver, logger, respond
from meterbill.openapi import openapi_document

app = create_resolver()


@app.get("/v1/openapi.json")
def get_openapi() -> Response[str]:
    return respond(200, openapi_document())


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
