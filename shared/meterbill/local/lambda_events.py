"""Lambda event and context shapes, built the way API Gateway and the stream mapping build them."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["FakeLambdaContext", "http_api_event", "http_authorizer_event", "stream_event"]


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    timeout_seconds: int = 15

    def __post_init__(self) -> None:
        self.invoked_function_arn = (
            f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        )
        self.function_version = "$LATEST"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def http_api_event(
    method: str,
    path: str,
    route_key: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    path_parameters: dict[str, str] | None = None,
    authorizer_context: dict[str, Any] | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) proxy event."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    now = time.time()
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": lowered.get("host", "localhost"),
        "domainPrefix": "local",
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": lowered.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if authorizer_context is not None:
        request_context["authorizer"] = {"lambda": authorizer_context}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    parameters = _query_parameters(query)
    if parameters:
        event["queryStringParameters"] = parameters
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = body
    return event


def http_authorizer_event(route_key: str, headers: dict[str, str]) -> dict[str, Any]:
    """A REQUEST authorizer event (payload format 2.0) for a request with these headers."""
    lowered = {name.lower(): value for name, value in headers.items()}
    identity = [lowered["x-api-key"]] if "x-api-key" in lowered else []
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": (
            "arn:aws:execute-api:us-east-1:123456789012:local/$default/"
            + route_key.replace(" ", "", 1)
        ),
        "identitySource": identity,
        "routeKey": route_key,
        "headers": lowered,
        "requestContext": {"routeKey": route_key, "stage": "$default"},
    }


def stream_event(records: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """A DynamoDB Streams batch as Lambda's event source mapping delivers it."""
    return {
        "Records": [
            {
                "eventID": record["eventID"],
                "eventName": record["eventName"],
                "eventVersion": record.get("eventVersion", "1.1"),
                "eventSource": "aws:dynamodb",
                "awsRegion": record.get("awsRegion", "us-east-1"),
                "dynamodb": record["dynamodb"],
                "eventSourceARN": stream_arn,
            }
            for record in records
        ]
    }


def _query_parameters(query: str) -> dict[str, str]:
    # HTTP APIs join repeated parameters with commas.
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
    return parameters
