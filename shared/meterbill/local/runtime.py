"""The same handlers Lambda runs, in one process, on moto's in-process DynamoDB.

Every invocation (HTTP or stream) runs under one lock: moto's backends are not safe for
concurrent writers, and in one Python process threads would not run handlers faster anyway.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from aws_lambda_powertools import Logger

from meterbill.local.lambda_events import (
    FakeLambdaContext,
    http_api_event,
    http_authorizer_event,
    stream_event,
)
from meterbill.local.template import (
    HttpRoute,
    QueueConsumer,
    StreamConsumer,
    Template,
    queue_consumers,
    scheduled_functions,
)

__all__ = ["HttpResponse", "LocalRuntime", "json_error"]

logger = Logger(service="meterbill", child=True)

LOCAL_TABLE_NAME = "meterbill-local"
_STREAM_POLL_SECONDS = 0.1
_STREAM_RETRY_SECONDS = 1.0
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class HttpResponse:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class LocalRuntime:
    """Starts moto, creates the table from template.yaml and invokes handlers like Lambda."""

    def __init__(self, project_root: Path, table_name: str = LOCAL_TABLE_NAME) -> None:
        self.template = Template(project_root / "template.yaml")
        self.table_name = table_name
        self.lock = threading.RLock()
        self._mock: Any = None
        self._handlers: dict[str, Handler] = {}
        self._routes = self.template.http_routes()
        self._stream = self.template.stream_consumer()
        self._pump: _StreamPump | None = None
        self._queue_urls: dict[str, str] = {}
        self._queues: list[_QueuePump] = []
        self._scheduler: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        _isolate_from_real_aws(self.table_name)
        from moto import mock_aws  # imported late: only the local runtime needs it

        self._mock = mock_aws()
        self._mock.start()
        self._create_table()
        self._create_queues()
        self._apply_template_environment()
        for function in self.template.functions():
            self._handlers[function] = self._load_handler(function)
        self._pump = _StreamPump(self, self._stream)
        self._pump.start()
        self._queues = [
            _QueuePump(self, c, self._queue_urls[c.queue]) for c in queue_consumers(self.template)
        ]
        for queue in self._queues:
            queue.start()

    def run_schedules_every(self, seconds: float) -> None:
        """Invoke the template's scheduled functions every `seconds` (hourly on AWS)."""

        def loop() -> None:
            while not self._stopping.wait(seconds):
                for function in scheduled_functions(self.template):
                    try:
                        self.invoke(function, {"source": "local.schedule"})
                    except Exception:
                        logger.exception("scheduled function failed", extra={"function": function})

        self._scheduler = threading.Thread(target=loop, name="schedule", daemon=True)
        self._scheduler.start()

    def close_periods(self, now: datetime | None = None, timeout: float = 600.0) -> dict[str, int]:
        """Run the scheduled close at `now` (default: the real now) and wait for its queue."""
        event: dict[str, Any] = {"source": "local.close-periods"}
        if now is not None:
            event["now"] = now.isoformat()
        queued = 0
        for function in scheduled_functions(self.template):
            queued += int(self.invoke(function, event).get("queued", 0))
        failed = sum(queue.drain(timeout) for queue in self._queues)
        return {"queued": queued, "failed": failed}

    def stop(self) -> None:
        self._stopping.set()
        for queue in self._queues:
            queue.stop()
        if self._pump is not None:
            self._pump.stop()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None

    def drain_stream(self, timeout: float = 5.0) -> None:
        """Block until every stream record written so far reached the aggregator."""
        assert self._pump is not None
        self._pump.drain(timeout)

    # --- invocation ----------------------------------------------------------------------------

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        context = FakeLambdaContext(function_name=function)
        with self.lock:
            return self._handlers[function](event, context)

    def handle_http(
        self, method: str, path: str, query: str, headers: dict[str, str], body: str | None
    ) -> HttpResponse:
        route, parameters = self._route(method, path)
        if route is None:
            return json_error(404, "not_found", f"no route {method} {path}")

        authorizer_context = None
        if route.authenticated:
            authorizer_context = self._authorize(route, headers)
            if authorizer_context is None:
                return json_error(401, "unauthorized", "x-api-key is missing or invalid")

        event = http_api_event(
            method,
            path,
            route.route_key,
            query=query,
            headers=headers,
            body=body,
            path_parameters=parameters,
            authorizer_context=authorizer_context,
        )
        result = self.invoke(route.function, event)
        return HttpResponse(
            status=int(result.get("statusCode", 200)),
            headers={k: str(v) for k, v in (result.get("headers") or {}).items()},
            body=str(result.get("body") or ""),
        )

    def _authorize(self, route: HttpRoute, headers: dict[str, str]) -> dict[str, Any] | None:
        lowered = {name.lower(): value for name, value in headers.items()}
        if not lowered.get("x-api-key"):
            return None
        event = http_authorizer_event(route.route_key, lowered)
        answer = self.invoke(self.template.authorizer_function(), event)
        if not answer.get("isAuthorized"):
            return None
        context: dict[str, Any] = answer.get("context") or {}
        return context

    def _route(self, method: str, path: str) -> tuple[HttpRoute | None, dict[str, str]]:
        for route in self._routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None, {}

    # --- setup ---------------------------------------------------------------------------------

    def _create_table(self) -> None:
        import boto3

        client = boto3.client("dynamodb")
        client.create_table(**self.template.table_definition(self.table_name))
        ttl_attribute = self.template.ttl_attribute()
        if ttl_attribute:
            client.update_time_to_live(
                TableName=self.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
            )

    def _create_queues(self) -> None:
        import boto3

        sqs = boto3.client("sqs")
        for name in self.template.queues():
            self._queue_urls[name] = sqs.create_queue(QueueName=name)["QueueUrl"]

    def _apply_template_environment(self) -> None:
        """Environment variables from the template, as the functions see them on AWS; values
        the local runtime set already (table, concurrency, limits) win."""

        def resolve(reference: str) -> str:
            if reference in self._queue_urls:
                return self._queue_urls[reference]
            if reference == "EventBusName":
                return ""  # no bus locally: invoice events go to the log
            default = self.template.parameter_default(reference)
            return self.table_name if default is None else default

        for name, value in self.template.environment(resolve).items():
            os.environ.setdefault(name, value)

    def _load_handler(self, function: str) -> Handler:
        source, attribute = self.template.handler_file(function)
        module = _import_file(f"meterbill_function_{function}", source)
        handler: Handler = getattr(module, attribute)
        return handler


class _QueuePump:
    """Delivers an SQS queue to its consumer like Lambda's SQS event source: batches, partial
    batch failures (failed messages come back after a pause), successes deleted."""

    def __init__(self, runtime: LocalRuntime, consumer: QueueConsumer, url: str) -> None:
        import boto3

        self._runtime = runtime
        self._consumer = consumer
        self._url = url
        self._sqs = boto3.client("sqs")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sqs-{consumer.queue}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def drain(self, timeout: float) -> int:
        """Deliver until the queue is empty; the number of deliveries that reported failures."""
        deadline = time.monotonic() + timeout
        failures = 0
        while time.monotonic() < deadline:
            delivered, failed = self._tick(visibility=0)
            failures += failed
            if delivered == 0 and failed == 0:
                return failures
        return failures

    def _run(self) -> None:
        while not self._stopping.wait(_STREAM_POLL_SECONDS):
            try:
                self._tick(visibility=_STREAM_RETRY_SECONDS)
            except Exception:
                logger.exception("queue pump failed; retrying")

    def _tick(self, visibility: float) -> tuple[int, int]:
        with self._runtime.lock:
            response = self._sqs.receive_message(
                QueueUrl=self._url,
                MaxNumberOfMessages=min(10, self._consumer.batch_size),
                VisibilityTimeout=int(max(1, visibility)),
            )
            messages = response.get("Messages", [])
            if not messages:
                return 0, 0
            event = {"Records": [_sqs_record(m, self._url) for m in messages]}
            try:
                result = self._runtime.invoke(self._consumer.function, event)
                failed_ids = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            except Exception:
                logger.exception("queue consumer raised; the batch will be retried")
                failed_ids = {m["MessageId"] for m in messages}
            for message in messages:
                if message["MessageId"] not in failed_ids:
                    self._sqs.delete_message(
                        QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"]
                    )
            return len(messages) - len(failed_ids), len(failed_ids)


def _sqs_record(message: dict[str, Any], url: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:" + url.rsplit("/", 1)[-1],
        "awsRegion": "us-east-1",
    }


class _StreamPump:
    """Reads the table's stream like Lambda's event source mapping and calls the consumer.

    Applies the mapping's filter and batch size; on a reported failure it retries from the
    failed record after a pause, and on an exception it retries the whole batch.
    """

    def __init__(self, runtime: LocalRuntime, consumer: StreamConsumer) -> None:
        import boto3

        self._runtime = runtime
        self._consumer = consumer
        self._streams = boto3.client("dynamodbstreams")
        self._stream_arn = boto3.client("dynamodb").describe_table(TableName=runtime.table_name)[
            "Table"
        ]["LatestStreamArn"]
        self._iterators: dict[str, str | None] = {}
        self._pending: list[dict[str, Any]] = []
        self._idle = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-pump", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def drain(self, timeout: float) -> None:
        # Two full idle ticks: the first may have fetched before the caller's last write.
        deadline = time.monotonic() + timeout
        for _ in range(2):
            self._idle.clear()
            while not self._idle.wait(0.05):
                if time.monotonic() > deadline:
                    raise TimeoutError("the stream pump did not catch up in time")

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                delivered_all = self._tick()
            except Exception:
                logger.exception("stream pump failed; retrying")
                delivered_all = False
                self._stopping.wait(_STREAM_RETRY_SECONDS)
            if delivered_all:
                self._idle.set()
            self._stopping.wait(_STREAM_POLL_SECONDS)

    def _tick(self) -> bool:
        """Fetch new records and deliver them; True when nothing is left to deliver."""
        with self._runtime.lock:
            self._pending.extend(self._fetch())
        while self._pending:
            batch = self._pending[: self._consumer.batch_size]
            selected = [r for r in batch if _matches_filters(r, self._consumer.filter_patterns)]
            failed_from = self._deliver(selected) if selected else None
            if failed_from is None:
                del self._pending[: len(batch)]
                continue
            keep_from = next(
                i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] == failed_from
            )
            del self._pending[:keep_from]
            self._stopping.wait(_STREAM_RETRY_SECONDS)
            return False
        return True

    def _deliver(self, records: list[dict[str, Any]]) -> str | None:
        """Invoke the consumer; the sequence number to retry from, or None on success."""
        event = stream_event(records, self._stream_arn)
        try:
            result = self._runtime.invoke(self._consumer.function, event)
        except Exception:
            logger.exception("stream consumer raised; the batch will be retried")
            return str(records[0]["dynamodb"]["SequenceNumber"])
        failures = (result or {}).get("batchItemFailures") or []
        if not failures:
            return None
        return str(min((f["itemIdentifier"] for f in failures), key=int))

    def _fetch(self) -> list[dict[str, Any]]:
        description = self._streams.describe_stream(StreamArn=self._stream_arn)
        records: list[dict[str, Any]] = []
        for shard in description["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            iterator = self._iterators[shard_id]
            if iterator is None:
                continue
            response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard_id] = response.get("NextShardIterator")
            records.extend(_as_lambda_record(r) for r in response.get("Records", []))
        return records


def _as_lambda_record(record: dict[str, Any]) -> dict[str, Any]:
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**record, "dynamodb": change}


def _matches_filters(record: dict[str, Any], patterns: list[dict[str, Any]]) -> bool:
    """Lambda event filtering for the subset of patterns the template uses: exact values."""
    if not patterns:
        return True
    return any(_matches_pattern(record, pattern) for pattern in patterns)


def _matches_pattern(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, list):
        return value in pattern
    if not isinstance(pattern, dict) or not isinstance(value, dict):
        return False
    return all(key in value and _matches_pattern(value[key], sub) for key, sub in pattern.items())


def _import_file(name: str, source: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _isolate_from_real_aws(table_name: str) -> None:
    """Point every client at moto with fake credentials: nothing may reach a real account."""
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "TABLE_NAME": table_name,
            "INGEST_WRITE_CONCURRENCY": "1",
            "EVENT_BUS_NAME": "",
            "BACKFILL_DELAY_SECONDS": "0",
            "INGEST_RATE_LIMIT": os.environ.get("INGEST_RATE_LIMIT", "0"),
            "POWERTOOLS_SERVICE_NAME": "meterbill",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)


def json_error(status: int, code: str, message: str) -> HttpResponse:
    from meterbill.http import dumps

    body = dumps({"code": code, "message": message, "http_status_code": status, "details": []})
    return HttpResponse(status, {"Content-Type": "application/json"}, body)
