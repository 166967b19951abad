"""HTTP API Lambda authorizer: resolves `x-api-key` to a tenant (simple response format).

API Gateway caches the answer per key, so a key costs one table read per cache period.
"""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from meterbill.http import logger
from meterbill.keys import tenant_for_secret
from meterbill.runtime import store


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    tenant = tenant_for_secret(store(), headers.get("x-api-key"))
    if tenant is None:
        logger.info("request refused: unknown or missing api key")
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": {"tenant_id": tenant}}
