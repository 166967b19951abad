"""One meterbill deployment inside moto, driven the way Lambda drives the real one.

A fresh table built from template.yaml (and the template's queues), the handlers imported from
their CodeUri as Lambda imports them, the store's client metered (`capacity.CapacityMeter`),
and the table's stream handed to the aggregator as the event source mapping hands it over: the
template's filter, its batch size, the creation time as whole epoch seconds. The stream records
are moto's own, read from its memory.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
from datetime import datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import boto3
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from meterbill import runtime, settings
from meterbill.local.lambda_events import FakeLambdaContext, http_api_event, stream_event
from meterbill.local.template import Template
from meterbill.storage import Store
from tests.bench.capacity import CapacityMeter

__all__ = ["OVERRIDES", "PROJECT_ROOT", "TABLE_NAME", "Deployment", "deployed_environment"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TABLE_NAME = "meterbill-bench"
# Fake credentials: nothing here may reach a real AWS account.
_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Where the benchmark departs from the deployed configuration, and why.
OVERRIDES = {
    "TABLE_NAME": (TABLE_NAME, "the moto table"),
    "POWERTOOLS_LOG_LEVEL": ("WARNING", "keeps the report readable; INFO adds a line a request"),
    "INGEST_WRITE_CONCURRENCY": ("1", "moto is not safe for concurrent writers"),
}
# A rate limit that is on but never refuses the benchmark: counting costs the same either way.
_UNREACHABLE_RATE_LIMIT = "1000000000"
_module_names = itertools.count()

Record = dict[str, Any]


class Deployment:
    """Use as a context manager: moto, the table and the environment live inside it."""

    def __init__(self, tenant_id: str = "bench") -> None:
        self.tenant_id = tenant_id
        self.template = Template(PROJECT_ROOT / "template.yaml")
        self.consumer = self.template.stream_consumer()
        self.last_stream_event: dict[str, Any] | None = None
        self._saved_environment: dict[str, str | None] = {}
        self._mock: Any = None
        self._handlers: dict[str, ModuleType] = {}
        self.store: Store
        self.meter: CapacityMeter

    def __enter__(self) -> Deployment:
        self._set_environment(_CREDENTIALS)
        os.environ.pop("AWS_PROFILE", None)
        self._mock = mock_aws()
        self._mock.start()
        self._set_environment(deployed_environment(self.template, _queue_urls(self.template)))
        _forget_cached_settings()
        client = boto3.client("dynamodb")
        client.create_table(**self.template.table_definition(TABLE_NAME))
        table = client.describe_table(TableName=TABLE_NAME)["Table"]
        self._stream_arn: str = table["LatestStreamArn"]
        self._backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][client.meta.region_name]
        self._stream_position = 0
        self.store = runtime.store()
        self.meter = CapacityMeter(self.store.client, reader=_BackendReader(client))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._mock.stop()
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _forget_cached_settings()

    def _set_environment(self, variables: dict[str, str]) -> None:
        for name, value in variables.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    # --- functions -------------------------------------------------------------------------

    def handler_module(self, function: str) -> ModuleType:
        """The function's handler module, imported from its CodeUri once per deployment."""
        if function not in self._handlers:
            source, _ = self.template.handler_file(function)
            name = f"bench_function_{function}_{next(_module_names)}"
            spec = importlib.util.spec_from_file_location(name, source)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._handlers[function] = module
        return self._handlers[function]

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        _, attribute = self.template.handler_file(function)
        handler = getattr(self.handler_module(function), attribute)
        result: dict[str, Any] = handler(event, FakeLambdaContext(function_name=function))
        return result

    def post_bulk(self, events: list[dict[str, Any]]) -> None:
        """POST /v1/events/bulk through the ingest handler, as API Gateway calls it."""
        with self.meter.phase("ingest"):
            result = self.invoke("IngestFunction", bulk_request(self.tenant_id, events))
        if result["statusCode"] != 202:
            raise AssertionError(f"bulk ingest answered {result['statusCode']}: {result['body']}")

    def deliver_stream(self, batch_size: int | None = None) -> int:
        """Hand every new stream record to the aggregator, in batches of the template's size
        unless told otherwise; the number of records delivered."""
        records = [r for r in self._new_records() if _passes(r, self.consumer.filter_patterns)]
        size = batch_size or self.consumer.batch_size
        for start in range(0, len(records), size):
            event = stream_event(records[start : start + size], self._stream_arn)
            with self.meter.phase("aggregator"):
                result = self.invoke(self.consumer.function, event)
            if result.get("batchItemFailures"):
                raise AssertionError(f"the aggregator reported failures: {result}")
            self.last_stream_event = event
        return len(records)

    def skip_stream(self) -> None:
        """Consume the stream records written so far without delivering them."""
        self._new_records()

    def _new_records(self) -> list[Record]:
        # Read from moto's memory: its GetRecords API spends over a millisecond a record.
        shard = self._backend.get_table(TABLE_NAME).stream_shard
        assert shard is not None, "the template's table has a stream"
        records = [_as_delivered(r.record) for r in shard.items[self._stream_position :]]
        self._stream_position = len(shard.items)
        return records


class _BackendReader:
    """The meter's reads, straight from moto's memory: bookkeeping that sends no request.

    The same interface as a DynamoDB client's, for the two calls the meter makes.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][client.meta.region_name]

    def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        item = self._backend.get_item(TableName, Key)
        return {} if item is None else {"Item": item.to_json()["Attributes"]}

    def describe_table(self, TableName: str) -> dict[str, Any]:
        description: dict[str, Any] = self._client.describe_table(TableName=TableName)
        return description


def deployed_environment(
    template: Template, resources: dict[str, str] | None = None
) -> dict[str, str]:
    """The variables the template gives its functions (parameters at their defaults, other
    references from `resources`), the ingest and aggregator functions' last, with the
    benchmark's `OVERRIDES`."""
    parameters = {
        name: str(spec.get("Default", ""))
        for name, spec in template.document.get("Parameters", {}).items()
    }
    references = {**parameters, **(resources or {})}
    functions = template.functions()
    first = ("IngestFunction", template.stream_consumer().function)
    sources = [
        template.document.get("Globals", {}).get("Function", {}),
        *(spec for name, spec in functions.items() if name not in first),
        *(functions[name] for name in first),
    ]
    environment: dict[str, str] = {}
    for source in sources:
        for name, value in (source.get("Environment") or {}).get("Variables", {}).items():
            if isinstance(value, dict) and "Ref" in value:
                value = references.get(value["Ref"], f"local-{value['Ref']}")
            environment[name] = str(value)
    if int(environment.get("INGEST_RATE_LIMIT", "0") or 0) > 0:
        environment["INGEST_RATE_LIMIT"] = _UNREACHABLE_RATE_LIMIT
    environment.update({name: value for name, (value, _) in OVERRIDES.items()})
    return environment


def _queue_urls(template: Template) -> dict[str, str]:
    """Create the template's SQS queues in moto; their URLs by resource name."""
    sqs = boto3.client("sqs")
    return {
        name: sqs.create_queue(QueueName=name)["QueueUrl"]
        for name, resource in template.resources.items()
        if resource["Type"] == "AWS::SQS::Queue"
    }


def bulk_request(tenant_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The HTTP API event of a bulk ingest the authorizer let through for `tenant_id`."""
    return http_api_event(
        "POST",
        "/v1/events/bulk",
        "POST /v1/events/bulk",
        headers={"content-type": "application/json"},
        body=json.dumps({"events": events}),
        authorizer_context={"tenant_id": tenant_id},
    )


def _forget_cached_settings() -> None:
    settings.settings.cache_clear()
    runtime.store.cache_clear()


def _as_delivered(record: Record) -> Record:
    # Lambda hands the creation time over as whole epoch seconds, boto3 parses a datetime.
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**record, "dynamodb": change}


def _passes(record: Record, patterns: list[dict[str, Any]]) -> bool:
    return not patterns or any(_matches(record, pattern) for pattern in patterns)


def _matches(value: Any, pattern: Any) -> bool:
    # Event filtering with exact-value lists, which is all the template uses.
    if isinstance(pattern, list):
        return value in pattern
    return isinstance(value, dict) and all(
        key in value and _matches(value[key], part) for key, part in pattern.items()
    )
