"""CPU time per event in the ingest and aggregator handlers, with storage stubbed out.

The handlers run as Lambda runs them (the module imported from its CodeUri, an API Gateway or
stream event, a context), but their store answers at once from memory. Beside them, in the same
process and run, the floor: what any Python ingest of the same payload must spend, parsing the
body (`json.loads` with `parse_float=Decimal`) and validating each event with pydantic
(`EventRequest`).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from meterbill import settings
from meterbill.models import EventRequest, StoredEvent
from meterbill.storage import Store
from tests.bench.deployment import TABLE_NAME, Deployment, bulk_request
from tests.bench.workload import busy_at, create_catalog, usage_events

__all__ = ["AnsweringStore", "CpuTimes", "measure_cpu"]

BULK = 100
ROUNDS = 5
# Each round runs for about this long, however fast the machine.
ROUND_SECONDS = 0.25


@dataclass(frozen=True)
class CpuTimes:
    """Median CPU seconds per event over `ROUNDS` rounds."""

    floor: float
    ingest: float
    ingest_one_writer: float
    aggregator: float
    write_concurrency: int
    # What the stub leaves out: `Store.put_event` through botocore, the HTTP exchange answered
    # from memory (serializing, signing, parsing; no network, no moto).
    client_put: float


class AnsweringStore:
    """Stands in for the store: every method answers from memory.

    The first call of a method with given arguments goes to the real store (moto) and its
    answer is kept; later calls get that answer at once. Arguments that cannot be hashed (an
    event, a counter delta) count as one: `put_event` answers True, `add_to_counter` None,
    after the first write. New store methods are covered without changing this class.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._answers: dict[tuple[Any, ...], Any] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        def answer(*args: Any, **kwargs: Any) -> Any:
            key = (name, *map(_hashable, args), *((k, _hashable(v)) for k, v in kwargs.items()))
            if key not in self._answers:
                self._answers[key] = method(*args, **kwargs)
            return self._answers[key]

        setattr(self, name, answer)  # later lookups skip __getattr__
        return answer


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return type(value).__name__
    return value


def measure_cpu(
    features: int = 3, rounds: int = ROUNDS, round_seconds: float = ROUND_SECONDS
) -> CpuTimes:
    """`rounds` and `round_seconds` trade precision for time (the CI test uses less)."""

    def per_event(work: Callable[[], None]) -> float:
        return _per_event(work, rounds, round_seconds)

    with Deployment() as deployment:
        at = busy_at(datetime.now(UTC))
        customers = ["customer"]
        create_catalog(deployment.store, deployment.tenant_id, features, customers, at)
        deployment.skip_stream()
        events = usage_events("cpu", BULK, customers, at)
        deployment.post_bulk(events)
        deployment.deliver_stream()
        stream_batch = deployment.last_stream_event
        assert stream_batch is not None and len(stream_batch["Records"]) == BULK

        fake = AnsweringStore(deployment.store)
        ingest = _with_store(deployment, "IngestFunction", fake)
        aggregator = _with_store(deployment, deployment.consumer.function, fake)
        request = bulk_request(deployment.tenant_id, events)
        body = request["body"]

        def floor() -> None:
            for raw in json.loads(body, parse_float=Decimal)["events"]:
                EventRequest.model_validate(raw)

        def ingest_call() -> None:
            result = ingest(request)
            assert result["statusCode"] == 202, result

        def aggregate_call() -> None:
            assert aggregator(stream_batch) == {"batchItemFailures": []}

        floor_time = per_event(floor)
        deployed = int(os.environ["INGEST_WRITE_CONCURRENCY"])
        one_writer = per_event(ingest_call)
        os.environ["INGEST_WRITE_CONCURRENCY"] = str(_deployed_concurrency(deployment))
        settings.settings.cache_clear()
        try:
            concurrency = settings.settings().ingest_write_concurrency
            many_writers = per_event(ingest_call)
        finally:
            os.environ["INGEST_WRITE_CONCURRENCY"] = str(deployed)
            settings.settings.cache_clear()
        aggregator_time = per_event(aggregate_call)
    # Outside moto, which answers from the same hook while its mock is on.
    client_put = per_event(_client_puts(deployment.tenant_id, events))
    return CpuTimes(
        floor=floor_time,
        ingest=many_writers,
        ingest_one_writer=one_writer,
        aggregator=aggregator_time,
        write_concurrency=concurrency,
        client_put=client_put,
    )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _client_puts(tenant_id: str, events: list[dict[str, Any]]) -> Callable[[], None]:
    """Stores the events through a real botocore client (configured as `Store` configures
    it) whose HTTP exchange is answered in memory."""
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "bench"}, _Raw(b"{}"))

    client.meta.events.register_first("before-send.dynamodb", answer)
    store = Store(TABLE_NAME, client=client)
    now = datetime.now(UTC)
    stored = [
        StoredEvent(
            tenant_id=tenant_id,
            event_id=event["event_id"],
            event_name=event["event_name"],
            external_customer_id=event["external_customer_id"],
            timestamp=now,
            properties=event["properties"],
            received_at=now,
        )
        for event in events
    ]

    def put_all() -> None:
        for event in stored:
            store.put_event(event)

    return put_all


def _with_store(
    deployment: Deployment, function: str, fake: AnsweringStore
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The function's handler with its module's `store()` answering `fake`."""
    module = deployment.handler_module(function)
    # The handler calls `store()` (imported from meterbill.runtime) on every invocation.
    setattr(module, "store", lambda: fake)  # noqa: B010 - a module attribute, on purpose
    if hasattr(module, "_cache"):
        setattr(module, "_cache", None)  # noqa: B010 - the aggregator's catalog cache

    def call(event: dict[str, Any]) -> dict[str, Any]:
        return deployment.invoke(function, event)

    return call


def _deployed_concurrency(deployment: Deployment) -> int:
    ingest = deployment.template.functions()["IngestFunction"]
    variables = ingest.get("Environment", {}).get("Variables", {})
    return int(variables.get("INGEST_WRITE_CONCURRENCY", "16"))


def _per_event(work: Callable[[], None], rounds: int, round_seconds: float) -> float:
    for _ in range(3):
        work()  # warm: imports, caches, pydantic's first-use setup
    start = time.process_time()
    work()
    once = max(time.process_time() - start, 1e-6)
    repeats = max(1, round(round_seconds / once))
    samples = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeats):
            work()
        samples.append((time.process_time() - start) / (repeats * BULK))
    return statistics.median(samples)
