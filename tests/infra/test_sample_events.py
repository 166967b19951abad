"""The sample events in events/ run their function's handler in-process against moto.

The same files serve `sam local invoke <Function> -e events/<file>`, so they must stay in the
shapes API Gateway and the stream mapping deliver and keep succeeding against today's handlers.
Each sample names its function, what the table must hold first, and what success looks like.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import pytest

from meterbill import billing, catalog
from meterbill.ingest import ingest_events
from meterbill.invoicing import close_due_periods
from meterbill.keys import create_api_key
from meterbill.local.template import HttpRoute, Template
from meterbill.models import (
    CustomerCreate,
    FeatureCreate,
    PlanCreate,
    Subscription,
    SubscriptionCreate,
)
from meterbill.notifications import EventPublisher
from meterbill.openapi import ROUTES
from meterbill.periods import parse_instant
from meterbill.storage import Store
from tests.conftest import PROJECT_ROOT, Handler, lambda_context

EVENTS_DIR = PROJECT_ROOT / "events"
TENANT = "tenant-a"
CUSTOMER = "acme-ai"
# Before every sample event, so that they all fall in the subscription's first period.
SUBSCRIPTION_START = "2025-06-01T00:00:00Z"
# The `now` of the close worker sample: June is over and its grace period too.
JUNE_CLOSED_AT = "2025-07-01T01:30:00Z"
# Prompt type -> USD per package of 1M tokens.
O1_PROMPT_TYPES = {"input": "15.00", "output": "60.00", "cached_input": "7.50"}

Event = dict[str, Any]


def _load(name: str) -> Event:
    event: Event = json.loads((EVENTS_DIR / name).read_text())
    return event


def _is_http(event: Event) -> bool:
    return event.get("version") == "2.0" and event.get("type") != "REQUEST"


def _json_body(result: dict[str, Any]) -> Any:
    return json.loads(result["body"], parse_float=Decimal)


def _documented_status(route_key: str) -> int:
    return next(r.status for r in ROUTES if f"{r.method} {r.path}" == route_key)


def _matches(value: Any, pattern: Any) -> bool:
    """Lambda event filtering, for the exact-value patterns the template uses."""
    if isinstance(pattern, list):
        return value in pattern
    if not isinstance(value, dict):
        return False
    return all(key in value and _matches(value[key], sub) for key, sub in pattern.items())


# --- what the table must hold before a sample runs ------------------------------------------------


def _o1_subscription(store: Store) -> Subscription:
    """The OpenAI o1 catalog: token features, a package-priced plan, a subscribed customer."""
    prices = []
    for prompt_type, amount in O1_PROMPT_TYPES.items():
        feature = catalog.create_feature(
            store,
            TENANT,
            FeatureCreate.model_validate(
                {
                    "name": f"OpenAI O1 {prompt_type} tokens",
                    "lookup_key": f"o1-{prompt_type}-tokens",
                    "event_name": "llm.tokens",
                    "aggregation": {"type": "SUM", "field": "tokens"},
                    "filters": {"model": ["OpenAI O1"], "prompt_type": [prompt_type]},
                }
            ),
        )
        prices.append(
            {
                "billing_model": "PACKAGE",
                "feature_id": feature.id,
                "amount": amount,
                "package_size": "1000000",
            }
        )
    plan = catalog.create_plan(
        store,
        TENANT,
        PlanCreate.model_validate(
            {"name": "OpenAI o1", "lookup_key": "openai-o1", "currency": "USD", "prices": prices}
        ),
    )
    catalog.create_customer(store, TENANT, CustomerCreate(external_id=CUSTOMER, name="Acme AI"))
    request = SubscriptionCreate(
        external_customer_id=CUSTOMER, plan_id=plan.id, start_date=SUBSCRIPTION_START
    )
    # Created when it starts, before the sample events were received: the stream counts them.
    return catalog.create_subscription(
        store, TENANT, request, now=parse_instant(SUBSCRIPTION_START)
    )


def _nothing(store: Store, event: Event) -> Event:
    return event


def _sample_api_key(store: Store, event: Event) -> Event:
    create_api_key(store, TENANT, "sample", secret=event["headers"]["x-api-key"])
    return event


def _o1_catalog(store: Store, event: Event) -> Event:
    _o1_subscription(store)
    return event


def _o1_subscription_in_path(store: Store, event: Event) -> Event:
    # Subscription ids are random: send the sample's request for the one just created.
    sample_id = event["pathParameters"]["subscription_id"]
    subscription_id = _o1_subscription(store).id
    swapped: Event = json.loads(json.dumps(event).replace(sample_id, subscription_id))
    return swapped


def _ingested_usage_event(store: Store, event: Event) -> Event:
    _o1_subscription(store)
    ingest_events(store, TENANT, [json.loads(_load("ingest_event.json")["body"])], field_prefix="")
    return event


def _o1_subscription_in_message(store: Store, event: Event) -> Event:
    sample_id = json.loads(event["Records"][0]["body"])["subscription_id"]
    subscription_id = _o1_subscription(store).id
    swapped: Event = json.loads(json.dumps(event).replace(sample_id, subscription_id))
    return swapped


def _o1_june_invoiced(store: Store, event: Event) -> Event:
    subscription = _o1_subscription(store)
    closed_at = parse_instant(JUNE_CLOSED_AT)
    close_due_periods(store, EventPublisher(None), TENANT, subscription.id, closed_at)
    return event


# --- what success looks like, beyond the documented status code -----------------------------------


def _authorized_as_tenant(store: Store, event: Event, result: dict[str, Any]) -> None:
    assert result == {"isAuthorized": True, "context": {"tenant_id": TENANT}}


def _event_stored(store: Store, event: Event, result: dict[str, Any]) -> None:
    sent = json.loads(event["body"])
    stored = store.list_customer_events(TENANT, sent["external_customer_id"], 10, None).events

    assert _json_body(result)["event_id"] == sent["event_id"]
    assert [e.event_id for e in stored] == [sent["event_id"]]


def _all_events_accepted(store: Store, event: Event, result: dict[str, Any]) -> None:
    sent = json.loads(event["body"])["events"]

    assert _json_body(result)["accepted"] == str(len(sent))
    assert _json_body(result)["duplicates"] == "0"


def _feature_created(store: Store, event: Event, result: dict[str, Any]) -> None:
    created = _json_body(result)
    feature = store.get_feature(TENANT, created["id"])

    assert feature is not None
    assert feature.lookup_key == json.loads(event["body"])["lookup_key"]


def _invoice_for_path_subscription(store: Store, event: Event, result: dict[str, Any]) -> None:
    invoice = _json_body(result)

    assert invoice["subscription_id"] == event["pathParameters"]["subscription_id"]
    assert invoice["currency"] == "USD"
    assert len(invoice["line_items"]) == len(O1_PROMPT_TYPES)


def _customer_events_listed(store: Store, event: Event, result: dict[str, Any]) -> None:
    listed = [item["event_id"] for item in _json_body(result)["items"]]

    assert listed == [json.loads(_load("ingest_event.json")["body"])["event_id"]]


def _usage_counted(store: Store, event: Event, result: dict[str, Any]) -> None:
    image = event["Records"][0]["dynamodb"]["NewImage"]
    timestamp = parse_instant(image["timestamp"]["S"])
    prompt_type = image["properties"]["M"]["prompt_type"]["S"]
    [subscription] = store.list_customer_subscriptions(
        TENANT, catalog.customer_id_for(TENANT, CUSTOMER)
    )
    usage = billing.current_usage(store, TENANT, subscription.id, now=timestamp)
    quantities = {item.lookup_key: item.quantity for item in usage.items}

    assert result == {"batchItemFailures": []}
    assert quantities[f"o1-{prompt_type}-tokens"] == Decimal(
        image["properties"]["M"]["tokens"]["N"]
    )


def _subscription_queued(store: Store, event: Event, result: dict[str, Any]) -> None:
    [subscription] = store.list_customer_subscriptions(
        TENANT, catalog.customer_id_for(TENANT, CUSTOMER)
    )
    queue_url = boto3.client("sqs").get_queue_url(QueueName="CloseQueue")["QueueUrl"]
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)

    assert result == {"queued": 1}
    [message] = messages["Messages"]
    assert json.loads(message["Body"])["subscription_id"] == subscription.id


def _june_invoiced(store: Store, event: Event, result: dict[str, Any]) -> None:
    subscription_id = json.loads(event["Records"][0]["body"])["subscription_id"]
    ids, _ = store.list_invoices(TENANT, f"SUB#{subscription_id}", None, 10, None)
    invoices = [store.get_invoice(TENANT, invoice_id) for invoice_id in ids]

    assert result == {"batchItemFailures": []}
    assert [(i.number, i.period_start, i.period_end) for i in invoices if i] == [
        ("INV-000001", parse_instant(SUBSCRIPTION_START), parse_instant("2025-07-01T00:00:00Z"))
    ]


def _invoices_listed(store: Store, event: Event, result: dict[str, Any]) -> None:
    [subscription] = store.list_customer_subscriptions(
        TENANT, catalog.customer_id_for(TENANT, CUSTOMER)
    )
    [invoice] = _json_body(result)["items"]

    assert invoice["number"] == "INV-000001"
    assert invoice["status"] == "finalized"
    assert invoice["subscription_id"] == subscription.id
    assert _json_body(result)["next_cursor"] is None


def _uncounted_usage_found(store: Store, event: Event, result: dict[str, Any]) -> None:
    sent = json.loads(_load("ingest_event.json")["body"])

    assert event["customer_id"] == catalog.customer_id_for(TENANT, sent["external_customer_id"])
    # Nothing ran the aggregator: the stored event is recounted but was never counted.
    [difference] = result["differences"]
    assert difference.endswith(f"counted 0, recounted {sent['properties']['tokens']}")


def _openapi_document(store: Store, event: Event, result: dict[str, Any]) -> None:
    document = _json_body(result)

    assert document["openapi"] == "3.1.0"
    assert "/v1/events" in document["paths"]


@dataclass(frozen=True)
class Sample:
    function: str
    arrange: Callable[[Store, Event], Event]
    check: Callable[[Store, Event, dict[str, Any]], None]


SAMPLES = {
    "authorizer.json": Sample("AuthorizerFunction", _sample_api_key, _authorized_as_tenant),
    "ingest_event.json": Sample("IngestFunction", _o1_catalog, _event_stored),
    "ingest_bulk.json": Sample("IngestFunction", _o1_catalog, _all_events_accepted),
    "catalog_create_feature.json": Sample("CatalogFunction", _nothing, _feature_created),
    "billing_proposed_invoice.json": Sample(
        "BillingFunction", _o1_subscription_in_path, _invoice_for_path_subscription
    ),
    "billing_list_events.json": Sample(
        "BillingFunction", _ingested_usage_event, _customer_events_listed
    ),
    "aggregator_stream.json": Sample("AggregatorFunction", _o1_catalog, _usage_counted),
    "close_scheduler.json": Sample("CloseSchedulerFunction", _o1_catalog, _subscription_queued),
    "close_worker_sqs.json": Sample(
        "CloseWorkerFunction", _o1_subscription_in_message, _june_invoiced
    ),
    "invoices_list.json": Sample("InvoicesFunction", _o1_june_invoiced, _invoices_listed),
    "reconcile.json": Sample("ReconcileFunction", _ingested_usage_event, _uncounted_usage_found),
    "openapi.json": Sample("OpenApiFunction", _nothing, _openapi_document),
}
HTTP_SAMPLES = sorted(name for name in SAMPLES if _is_http(_load(name)))


# --- the files ------------------------------------------------------------------------------------


def test_every_file_in_events_has_a_sample_entry() -> None:
    assert sorted(path.name for path in EVENTS_DIR.iterdir()) == sorted(SAMPLES)


def test_every_function_has_a_sample_event(template: Template) -> None:
    assert {sample.function for sample in SAMPLES.values()} == set(template.functions())


@pytest.mark.parametrize("name", HTTP_SAMPLES)
def test_http_sample_is_a_request_for_a_route_of_its_function(
    name: str, template: Template
) -> None:
    event = _load(name)
    [route] = [r for r in template.http_routes() if r.route_key == event["routeKey"]]
    http = event["requestContext"]["http"]
    authorizer = event["requestContext"].get("authorizer")

    assert route.function == SAMPLES[name].function
    assert event["requestContext"]["routeKey"] == route.route_key
    assert (http["method"], http["path"]) == (route.method, event["rawPath"])
    assert route.match(route.method, event["rawPath"]) == event.get("pathParameters", {})
    assert ("x-api-key" in event["headers"]) is route.authenticated
    assert authorizer == ({"lambda": {"tenant_id": TENANT}} if route.authenticated else None)
    if "body" in event:
        assert event["headers"]["content-length"] == str(len(event["body"].encode()))


def test_authorizer_sample_presents_the_header_api_gateway_reads(template: Template) -> None:
    event = _load("authorizer.json")
    routes = {r.route_key: r for r in template.http_routes()}
    route: HttpRoute = routes[event["routeKey"]]

    assert route.authenticated
    assert event["identitySource"] == [event["headers"]["x-api-key"]]
    assert event["routeArn"].endswith(f"/$default/{route.method}{event['rawPath']}")


def test_stream_sample_passes_the_event_source_filter(template: Template) -> None:
    patterns = template.stream_consumer().filter_patterns

    for record in _load("aggregator_stream.json")["Records"]:
        assert any(_matches(record, pattern) for pattern in patterns)


def test_stream_sample_holds_the_item_ingest_stores_for_the_ingest_sample(
    store: Store, load_handler: Callable[[str], Handler]
) -> None:
    change = _load("aggregator_stream.json")["Records"][0]["dynamodb"]
    image = change["NewImage"]

    load_handler("IngestFunction")(_load("ingest_event.json"), lambda_context())
    stored = store.client.get_item(TableName=store.table_name, Key=change["Keys"])["Item"]

    assert change["Keys"] == {"pk": image["pk"], "sk": image["sk"]}
    assert change["StreamViewType"] == "NEW_IMAGE"
    # Only the moment of receipt differs between two ingestions of the same request, and the
    # timestamp, which is that moment for an event sent without one.
    received = stored["received_at"]["S"]
    assert stored["timestamp"] == {"S": received}
    assert stored["gsi1sk"] == {"S": f"{received}#{image['event_id']['S']}"}
    moments = ("received_at", "timestamp", "gsi1sk")
    assert {**stored, **{name: image[name] for name in moments}} == image


# --- running them ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_event_succeeds_against_its_handler(
    name: str,
    store: Store,
    load_handler: Callable[[str], Handler],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sample = SAMPLES[name]
    handler = load_handler(sample.function)
    module = sys.modules[handler.__module__]
    if hasattr(module, "_cache"):
        # A warm aggregator keeps the catalog it has read; this test's table is a new one.
        monkeypatch.setattr(module, "_cache", None)
    event = sample.arrange(store, _load(name))

    result = handler(event, lambda_context(sample.function))

    if _is_http(event):
        assert result["statusCode"] == _documented_status(event["routeKey"]), result["body"]
    sample.check(store, event, result)
