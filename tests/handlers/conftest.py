"""Fixtures that call the functions of template.yaml the way Lambda calls them, on moto."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.core.config import default_user_config

from meterbill.local.template import Template
from meterbill.models import Invoice
from meterbill.notifications import EventPublisher
from meterbill.storage import Store
from tests.conftest import Handler, lambda_context
from tests.handlers.api import Api
from tests.handlers.closing import Closer
from tests.handlers.scenario import Subscribed, subscribe_o1
from tests.handlers.stream import Deliver, Record, StreamReader

LoadHandler = Callable[[str], Handler]


@pytest.fixture(scope="package", autouse=True)
def _one_boto3_session() -> Iterator[None]:
    """Keep boto3's default session from test to test instead of letting moto drop it.

    A fresh session parses botocore's JSON models again, about 0.1 s per test and most of this
    folder's run time. Sharing it is safe: moto is imported first, so the session carries its
    request hooks, and every table still lives in its own `mock_aws` context.
    """
    core = default_user_config["core"]
    previous = core.get("reset_boto3_session", True)
    core["reset_boto3_session"] = False
    boto3.DEFAULT_SESSION = None
    yield
    core["reset_boto3_session"] = previous
    boto3.DEFAULT_SESSION = None


def _api(function: str, template: Template, load_handler: LoadHandler) -> Api:
    routes = [route for route in template.http_routes() if route.function == function]
    return Api(load_handler(function), routes)


@pytest.fixture
def catalog_api(store: Store, template: Template, load_handler: LoadHandler) -> Api:
    return _api("CatalogFunction", template, load_handler)


@pytest.fixture
def ingest_api(store: Store, template: Template, load_handler: LoadHandler) -> Api:
    return _api("IngestFunction", template, load_handler)


@pytest.fixture
def billing_api(store: Store, template: Template, load_handler: LoadHandler) -> Api:
    return _api("BillingFunction", template, load_handler)


@pytest.fixture
def invoices_api(store: Store, template: Template, load_handler: LoadHandler) -> Api:
    return _api("InvoicesFunction", template, load_handler)


@pytest.fixture
def closer(store: Store, load_handler: LoadHandler) -> Closer:
    return Closer(
        load_handler("CloseSchedulerFunction"),
        load_handler("CloseWorkerFunction"),
        os.environ["CLOSE_QUEUE_URL"],
    )


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Invoice]]:
    """Every invoice event the functions publish, as (detail type, invoice), in order."""
    events: list[tuple[str, Invoice]] = []

    def publish(self: EventPublisher, detail_type: str, invoice: Invoice) -> None:
        events.append((detail_type, invoice))

    monkeypatch.setattr(EventPublisher, "publish", publish)
    return events


@pytest.fixture
def stream(store: Store, template: Template) -> StreamReader:
    return StreamReader(store.table_name, template.stream_consumer().filter_patterns)


@pytest.fixture
def deliver(
    stream: StreamReader, load_handler: LoadHandler, monkeypatch: pytest.MonkeyPatch
) -> Deliver:
    """Invoke the aggregator with a batch of stream records; returns its answer."""
    handler = load_handler("AggregatorFunction")
    # A warm aggregator keeps plans and features between invocations. Every test starts cold:
    # ids derived from lookup keys repeat from one test's table to the next.
    monkeypatch.setattr(sys.modules[handler.__module__], "_cache", None)

    def invoke(records: list[Record]) -> dict[str, Any]:
        return handler(stream.batch(records), lambda_context("aggregator"))

    return invoke


@pytest.fixture
def o1(catalog_api: Api) -> Subscribed:
    return subscribe_o1(catalog_api)
