"""The local runtime: bulk ingest throughput over HTTP, and proposed-invoice latency.

Throughput is measured against a real `meterbill serve` process (started the way the end-to-end
tests start it), one client sending 100-event bulks back to back. Invoice latency is measured
twice: over HTTP on that server with a few thousand events stored, and in-process with 100,000
events stored, the billing handler invoked as Lambda invokes it.

The 100,000 events cannot go through HTTP within the benchmark's five minutes: moto's PutItem
round trip is a few milliseconds here, and every moto Query sorts the whole table, so each
request gets slower as the table grows. They are therefore built by `Store.put_event` itself
(its request captured, not sent) and put straight into moto's table. moto's stream records of
them reach the aggregator handler in one batch rather than a hundred, for the same reason: each
batch queries the customer's subscriptions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from meterbill.local.client import ApiClient, ApiResponse
from meterbill.local.lambda_events import http_api_event
from meterbill.models import StoredEvent
from meterbill.storage import Store
from tests.bench.deployment import PROJECT_ROOT, TABLE_NAME, Deployment
from tests.bench.workload import EVENT_NAME, MODEL, create_catalog, feature_request

__all__ = [
    "FIRST_EVENTS",
    "LATENCY_SAMPLES",
    "SEEDED_SAMPLES",
    "InvoiceLatency",
    "Throughput",
    "measure_invoice_latency",
    "measure_throughput",
    "percentile",
]

API_KEY = "mb_bench_0123456789abcdef0123456789"
BULK = 100
LATENCY_SAMPLES = 21
# With 100,000 events each moto Query takes seconds (it sorts the table): fewer samples.
SEEDED_SAMPLES = 11
# Events sent over HTTP before the latency is measured, so that every counter exists.
FIRST_EVENTS = 100


@dataclass(frozen=True)
class Throughput:
    events: int
    bulk: int
    accepted_seconds: float  # first request sent to last 202 received
    counted_seconds: float  # first request sent to the usage showing every event
    invoice_latencies: list[float]  # over HTTP, once every event was counted

    @property
    def accepted_per_second(self) -> float:
        return self.events / self.accepted_seconds

    @property
    def counted_per_second(self) -> float:
        return self.events / self.counted_seconds


@dataclass(frozen=True)
class InvoiceLatency:
    events: int  # stored when `seeded` was measured
    before_seeding: list[float]  # with the catalog and `FIRST_EVENTS` events stored
    seeded: list[float]
    seed_seconds: float


def percentile(samples: list[float], rank: float) -> float:
    """Nearest-rank percentile: with 21 samples p50 is the 11th; p99 of 21 or 11 samples is
    the largest."""
    ordered = sorted(samples)
    index = max(0, min(len(ordered) - 1, round(rank / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- throughput over HTTP ----------------------------------------------------------------------


def measure_throughput(requests: int = 30) -> Throughput:
    with _serve() as url:
        client = ApiClient(url, API_KEY)
        subscription_id, count_feature = _subscribe(client)
        bodies = [
            {"events": [_event(f"tp-{r:04d}-{i:03d}") for i in range(BULK)]}
            for r in range(requests)
        ]

        start = time.perf_counter()
        for body in bodies:
            _expect(client.post("/v1/events/bulk", body), 202)
        accepted = time.perf_counter() - start
        _wait_until_counted(client, subscription_id, count_feature, requests * BULK)
        counted = time.perf_counter() - start

        path = f"/v1/subscriptions/{subscription_id}/invoices/proposed"
        latencies = _timed(lambda: _expect(client.get(path), 200), LATENCY_SAMPLES)
    return Throughput(requests * BULK, BULK, accepted, counted, latencies)


class _serve:
    """`meterbill serve` on a free loopback port, for the length of a with-block."""

    def __enter__(self) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        environment = {**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING"}
        command = [sys.executable, "-m", "meterbill.cli", "serve", "--port", str(port)]
        self._process = subprocess.Popen(
            [*command, "--api-key", API_KEY],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdout is not None
        banner = []
        for line in self._process.stdout:
            banner.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        else:
            raise RuntimeError("meterbill serve exited early:\n" + "".join(banner))
        # Keep reading, so that the server never blocks on a full pipe.
        self._reader = threading.Thread(target=self._process.stdout.read, daemon=True)
        self._reader.start()
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc_info: object) -> None:
        self._process.send_signal(signal.SIGTERM)
        self._process.wait(timeout=30)


def _subscribe(client: ApiClient) -> tuple[str, str]:
    """Three features (a count among them), a plan, a customer subscribed from now."""
    features = [
        _expect(client.post("/v1/features", feature_request(i).model_dump(mode="json")), 201)["id"]
        for i in range(3)
    ]
    prices = [
        {"billing_model": "PER_UNIT", "feature_id": f, "amount": "0.000015"} for f in features
    ]
    plan = {"name": "Tokens", "lookup_key": "tokens", "currency": "USD", "prices": prices}
    plan_id = _expect(client.post("/v1/plans", plan), 201)["id"]
    _expect(client.post("/v1/customers", {"external_id": "customer", "name": "Customer"}), 201)
    subscription = {"external_customer_id": "customer", "plan_id": plan_id}
    subscription_id = _expect(client.post("/v1/subscriptions", subscription), 201)["id"]
    return subscription_id, features[1]  # feature 1 counts events


def _event(event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_name": EVENT_NAME,
        "external_customer_id": "customer",
        "properties": {"model": MODEL, "prompt_type": "input", "tokens": "1500"},
        "source": "bench",
    }


def _wait_until_counted(
    client: ApiClient, subscription_id: str, feature_id: str, events: int, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        usage = _expect(client.get(f"/v1/subscriptions/{subscription_id}/usage"), 200)
        counted = {item["feature_id"]: item["quantity"] for item in usage["items"]}
        if counted.get(feature_id) == str(events):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"usage still shows {counted} after {timeout}s")
        time.sleep(0.05)


def _expect(response: ApiResponse, status: int) -> dict[str, Any]:
    if response.status != status or not isinstance(response.body, dict):
        raise AssertionError(f"expected {status}, got {response.status}: {response.body}")
    return response.body


# --- invoice latency with 100,000 events ------------------------------------------------------


def measure_invoice_latency(events: int = 100_000) -> InvoiceLatency:
    with Deployment() as deployment:
        now = datetime.now(UTC)
        created = create_catalog(deployment.store, deployment.tenant_id, 3, ["customer"], start=now)
        subscription_id = created.subscriptions["customer"].id
        request = http_api_event(
            "GET",
            f"/v1/subscriptions/{subscription_id}/invoices/proposed",
            "GET /v1/subscriptions/{subscription_id}/invoices/proposed",
            path_parameters={"subscription_id": subscription_id},
            authorizer_context={"tenant_id": deployment.tenant_id},
        )

        def invoice() -> None:
            result = deployment.invoke("BillingFunction", request)
            assert result["statusCode"] == 200, result

        deployment.skip_stream()
        deployment.post_bulk([_event(f"first-{i:03d}") for i in range(FIRST_EVENTS)])
        deployment.deliver_stream()
        before = _timed(invoice, LATENCY_SAMPLES)

        start = time.perf_counter()
        _seed(deployment, events - FIRST_EVENTS)
        deployment.deliver_stream(batch_size=events)
        seed_seconds = time.perf_counter() - start
        seeded = _timed(invoice, SEEDED_SAMPLES)

        result = deployment.invoke("BillingFunction", request)
        counts = {line["quantity"] for line in json.loads(result["body"])["line_items"]}
        if str(events) not in counts:
            raise AssertionError(f"the seeded events were not all counted: {counts}")
    return InvoiceLatency(events, before, seeded, seed_seconds)


class _CapturingClient:
    """Stands in for boto3 inside `Store.put_event`: keeps the item instead of sending it."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.items.append(request["Item"])
        return {}


def _seed(deployment: Deployment, events: int) -> None:
    # Received after the subscription was created, or the stream would leave them to backfill.
    now = datetime.now(UTC)
    capture = _CapturingClient()
    builder = Store(TABLE_NAME, client=capture)
    for i in range(events):
        builder.put_event(
            StoredEvent(
                tenant_id=deployment.tenant_id,
                event_id=f"seed-{i:07d}",
                event_name=EVENT_NAME,
                external_customer_id="customer",
                timestamp=now,
                properties={"model": MODEL, "prompt_type": "input", "tokens": "1500"},
                source="bench",
                received_at=now,
            )
        )
    region = deployment.store.client.meta.region_name
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(TABLE_NAME)
    for item in capture.items:
        table.put_item(item, overwrite=True)


def _timed(call: Callable[[], object], samples: int) -> list[float]:
    call()  # warm: the first call imports and caches
    latencies = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - start)
    return latencies
