"""The o1 walkthrough and the ingest guarantees, over real HTTP against `meterbill serve`."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flexprice import Flexprice

from meterbill.demo import run_walkthrough
from meterbill.local.client import ApiClient
from tests.e2e.conftest import KEY_A, KEY_B, LocalServer

EVENT_NAME = "llm.tokens"


def test_demo_walkthrough_prints_the_reference_invoice(server: LocalServer) -> None:
    invoice = run_walkthrough(server.client(KEY_B), customer="walkthrough-customer")

    assert [line["amount"] for line in invoice["line_items"]] == ["75.00", "120.00", "7.50"]
    assert [line["quantity"] for line in invoice["line_items"]] == ["5000000", "2000000", "1000000"]
    assert invoice["subtotal"] == "202.50"
    assert invoice["total"] == "202.50"
    assert invoice["currency"] == "USD"
    assert invoice["status"] == "proposed"


def test_one_token_over_five_million_bills_a_sixth_package(server: LocalServer) -> None:
    client = server.client()
    subscription = _subscribe(client, rounding="up")

    _send(client, subscription, [("input", "5000000"), ("input", 1)])

    invoice = _invoice_when(client, subscription, "input", Decimal(5_000_001))
    assert invoice["line_items"][0]["amount"] == "90.00"


def test_rounding_down_bills_whole_packages_only(server: LocalServer) -> None:
    client = server.client()
    subscription = _subscribe(client, rounding="down")

    _send(client, subscription, [("input", "5000001")])

    invoice = _invoice_when(client, subscription, "input", Decimal(5_000_001))
    assert invoice["line_items"][0]["amount"] == "75.00"


def test_the_same_bulk_request_twice_counts_each_event_once(server: LocalServer) -> None:
    client = server.client()
    subscription = _subscribe(client)
    events = _events(subscription, [("output", "1000000")] * 5)

    first = client.post("/v1/events/bulk", {"events": events})
    second = client.post("/v1/events/bulk", {"events": events})

    assert first.status == second.status == 202
    assert (first.body["accepted"], first.body["duplicates"]) == ("5", "0")
    assert (second.body["accepted"], second.body["duplicates"]) == ("0", "5")
    invoice = _invoice_when(client, subscription, "output", Decimal(5_000_000))
    assert invoice["line_items"][1]["amount"] == "300.00"


def test_eight_threads_with_overlapping_event_ids_count_each_id_once(
    server: LocalServer,
) -> None:
    client = server.client()
    subscription = _subscribe(client)
    # Thread t sends ids t*10 .. t*10+29: every id in 0..99 is sent by up to three threads.
    statuses: list[int] = []

    def send(thread: int) -> None:
        ids = range(thread * 10, thread * 10 + 30)
        events = [_event(subscription, "input", "1000", f"{subscription['tag']}-{i}") for i in ids]
        statuses.append(client.post("/v1/events/bulk", {"events": events}).status)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [202] * 8
    _invoice_when(client, subscription, "input", Decimal(100 * 1000))
    time.sleep(0.3)
    assert _quantity(client, subscription, "input") == Decimal(100 * 1000)


def test_flexprice_sdk_ingests_unchanged(server: LocalServer) -> None:
    subscription = _subscribe(server.client())
    sdk = Flexprice(server_url=f"{server.url}/v1", api_key_auth=KEY_A)
    properties = {"model": "OpenAI O1", "prompt_type": "cached_input", "tokens": "600000"}

    single = sdk.events.ingest_event(
        event_name=EVENT_NAME,
        external_customer_id=subscription["customer"],
        event_id=f"{subscription['tag']}-sdk-1",
        properties=properties,
    )
    bulk = sdk.events.ingest_events_bulk(
        events=[
            {
                "event_name": EVENT_NAME,
                "external_customer_id": subscription["customer"],
                "event_id": f"{subscription['tag']}-sdk-2",
                "properties": properties,
            }
        ]
    )

    assert single["event_id"] == f"{subscription['tag']}-sdk-1"
    assert bulk["accepted"] == "1"
    invoice = _invoice_when(server.client(), subscription, "cached_input", Decimal(1_200_000))
    assert invoice["line_items"][2]["amount"] == "15.00"


def test_usage_shows_within_a_second_of_acceptance(server: LocalServer) -> None:
    client = server.client()
    subscription = _subscribe(client)

    accepted_at = time.monotonic()
    _send(client, subscription, [("input", "42")])
    while _quantity(client, subscription, "input") != Decimal(42):
        assert time.monotonic() - accepted_at < 1.0, "usage did not show within one second"
        time.sleep(0.02)


def test_events_listing_shows_the_customers_events_newest_first(server: LocalServer) -> None:
    client = server.client()
    subscription = _subscribe(client)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    stamps = [_rfc3339(base + timedelta(seconds=s)) for s in (1, 3, 2)]
    events = [
        {**_event(subscription, "input", "1", f"{subscription['tag']}-{i}"), "timestamp": stamp}
        for i, stamp in enumerate(stamps)
    ]
    assert client.post("/v1/events/bulk", {"events": events}).status == 202

    first = client.get(f"/v1/events?external_customer_id={subscription['customer']}&limit=2")
    second = client.get(
        f"/v1/events?external_customer_id={subscription['customer']}&limit=2"
        f"&cursor={first.body['next_cursor']}"
    )

    listed = [e["timestamp"] for e in first.body["items"] + second.body["items"]]
    assert listed == [stamps[1], stamps[2], stamps[0]]
    assert second.body["next_cursor"] is None


def test_requests_without_a_valid_key_are_refused(server: LocalServer) -> None:
    for key in (None, "mb_live_not_a_key_anyone_issued"):
        response = server.client(key).get("/v1/features")
        assert response.status == 401
        assert response.body["code"] == "unauthorized"
        assert response.body["http_status_code"] == 401


def test_openapi_document_is_served_without_a_key(server: LocalServer) -> None:
    response = server.client(None).get("/v1/openapi.json")

    assert response.status == 200
    assert response.body["openapi"].startswith("3.1")
    assert "/v1/events/bulk" in response.body["paths"]


def test_another_tenant_cannot_see_a_subscription(server: LocalServer) -> None:
    subscription = _subscribe(server.client(KEY_A))

    response = server.client(KEY_B).get(f"/v1/subscriptions/{subscription['id']}")

    assert response.status == 404
    assert response.body["code"] == "not_found"


def test_an_unparseable_body_is_a_400_naming_the_problem(server: LocalServer) -> None:
    client = server.client()
    response = client.request("POST", "/v1/features", "not json")

    assert response.status == 400
    assert response.body["code"] == "validation_error"


# --- helpers ----------------------------------------------------------------------------------


def _rfc3339(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _subscribe(client: ApiClient, rounding: str = "up") -> dict[str, Any]:
    """A fresh o1 catalog, customer and subscription; lookup keys are unique per call."""
    tag = uuid.uuid4().hex[:10]
    features = {}
    for prompt_type in ("input", "output", "cached_input"):
        response = client.post(
            "/v1/features",
            {
                "name": f"o1 {prompt_type}",
                "lookup_key": f"{tag}-{prompt_type}",
                "event_name": EVENT_NAME,
                "aggregation": {"type": "SUM", "field": "tokens"},
                "filters": {"model": ["OpenAI O1"], "prompt_type": [prompt_type]},
            },
        )
        assert response.status == 201, response
        features[prompt_type] = response.body["id"]
    prices = [
        {
            "feature_id": features[prompt_type],
            "billing_model": "PACKAGE",
            "amount": amount,
            "package_size": 1000000,
            "rounding": rounding,
        }
        for prompt_type, amount in (("input", "15.00"), ("output", 60), ("cached_input", "7.5"))
    ]
    plan = client.post(
        "/v1/plans",
        {"name": "o1", "lookup_key": tag, "currency": "USD", "prices": prices},
    )
    assert plan.status == 201, plan
    customer = f"customer-{tag}"
    assert client.post("/v1/customers", {"external_id": customer, "name": tag}).status == 201
    subscription = client.post(
        "/v1/subscriptions", {"external_customer_id": customer, "plan_id": plan.body["id"]}
    )
    assert subscription.status == 201, subscription
    return {"id": subscription.body["id"], "customer": customer, "tag": tag, "features": features}


def _event(
    subscription: dict[str, Any], prompt_type: str, tokens: Any, event_id: str
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_name": EVENT_NAME,
        "external_customer_id": subscription["customer"],
        "properties": {"model": "OpenAI O1", "prompt_type": prompt_type, "tokens": tokens},
    }


def _events(subscription: dict[str, Any], usage: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [
        _event(subscription, prompt_type, tokens, f"{subscription['tag']}-{uuid.uuid4().hex}")
        for prompt_type, tokens in usage
    ]


def _send(client: ApiClient, subscription: dict[str, Any], usage: list[tuple[str, Any]]) -> None:
    response = client.post("/v1/events/bulk", {"events": _events(subscription, usage)})
    assert response.status == 202, response


def _quantity(client: ApiClient, subscription: dict[str, Any], prompt_type: str) -> Decimal:
    usage = client.get(f"/v1/subscriptions/{subscription['id']}/usage")
    assert usage.status == 200, usage
    by_feature = {item["feature_id"]: Decimal(item["quantity"]) for item in usage.body["items"]}
    return by_feature[subscription["features"][prompt_type]]


def _invoice_when(
    client: ApiClient, subscription: dict[str, Any], prompt_type: str, quantity: Decimal
) -> dict[str, Any]:
    """The proposed invoice once the feature's usage reached `quantity` (the stream is async)."""
    deadline = time.monotonic() + 10
    while _quantity(client, subscription, prompt_type) != quantity:
        assert time.monotonic() < deadline, "usage never reached the expected quantity"
        time.sleep(0.05)
    invoice = client.get(f"/v1/subscriptions/{subscription['id']}/invoices/proposed")
    assert invoice.status == 200, invoice
    body: dict[str, Any] = invoice.body
    return body
