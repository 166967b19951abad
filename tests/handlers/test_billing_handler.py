"""The billing function: usage and the proposed invoice read from the counters, and the events a
customer sent, listed newest first."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.handlers.api import Api, Reply
from tests.handlers.scenario import O1_CUSTOMER, Subscribed, send_events, token_event
from tests.handlers.stream import Deliver, StreamReader

O1_USAGE = [
    token_event("in-1", "input", "2000000"),
    token_event("in-2", "input", "2000000"),
    token_event("in-3", "input", "1000000"),
    token_event("out-1", "output", "1500000"),
    token_event("out-2", "output", "500000"),
    token_event("cached-1", "cached_input", "1000000"),
    # Same event name, other model: matches none of the o1 features.
    token_event("gpt-1", "input", "9000000", model="GPT-4o"),
]
# A day inside the backdating limit (ingest refuses events older than 35 days).
_YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date()


def _meter(ingest_api: Api, stream: StreamReader, deliver: Deliver, events: list[Any]) -> None:
    send_events(ingest_api, events)
    assert deliver(stream.new_event_records()) == {"batchItemFailures": []}


def _lines_by_feature(invoice: dict[str, Any], o1: Subscribed) -> dict[str, tuple[str, str]]:
    names = {feature_id: name for name, feature_id in o1.feature_ids.items()}
    return {
        names[line["feature_id"]]: (line["quantity"], line["amount"])
        for line in invoice["line_items"]
    }


# --- usage and the proposed invoice ---------------------------------------------------------


def test_usage_reports_each_priced_feature_of_the_current_period(
    o1: Subscribed, billing_api: Api, ingest_api: Api, stream: StreamReader, deliver: Deliver
) -> None:
    _meter(ingest_api, stream, deliver, O1_USAGE)

    reply = billing_api.get(f"/v1/subscriptions/{o1.subscription_id}/usage")

    assert reply.status == 200
    assert reply.body["subscription_id"] == o1.subscription_id
    quantities = {item["lookup_key"]: item["quantity"] for item in reply.body["items"]}
    assert quantities == {
        "o1-input-tokens": "5000000",
        "o1-output-tokens": "2000000",
        "o1-cached-input-tokens": "1000000",
    }


def test_proposed_invoice_reproduces_the_o1_walkthrough(
    o1: Subscribed, billing_api: Api, ingest_api: Api, stream: StreamReader, deliver: Deliver
) -> None:
    _meter(ingest_api, stream, deliver, O1_USAGE)

    reply = billing_api.get(f"/v1/subscriptions/{o1.subscription_id}/invoices/proposed")

    assert reply.status == 200
    invoice = reply.body
    assert (invoice["status"], invoice["currency"]) == ("proposed", "USD")
    assert _lines_by_feature(invoice, o1) == {
        "input": ("5000000", "75.00"),
        "output": ("2000000", "120.00"),
        "cached_input": ("1000000", "7.50"),
    }
    assert (invoice["subtotal"], invoice["total"]) == ("202.50", "202.50")
    assert all(line["price_id"].startswith("price_") for line in invoice["line_items"])


def test_one_token_over_five_packages_bills_a_sixth_package(
    o1: Subscribed, billing_api: Api, ingest_api: Api, stream: StreamReader, deliver: Deliver
) -> None:
    _meter(ingest_api, stream, deliver, [token_event("in-1", "input", "5000001")])

    reply = billing_api.get(f"/v1/subscriptions/{o1.subscription_id}/invoices/proposed")

    assert reply.status == 200
    assert _lines_by_feature(reply.body, o1) == {
        "input": ("5000001", "90.00"),
        "output": ("0", "0.00"),
        "cached_input": ("0", "0.00"),
    }
    assert reply.body["total"] == "90.00"


def test_invoice_without_usage_totals_zero(o1: Subscribed, billing_api: Api) -> None:
    reply = billing_api.get(f"/v1/subscriptions/{o1.subscription_id}/invoices/proposed")

    assert reply.status == 200
    assert {line["amount"] for line in reply.body["line_items"]} == {"0.00"}
    assert reply.body["total"] == "0.00"


@pytest.mark.parametrize("resource", ["usage", "invoices/proposed"])
def test_unknown_subscription_answers_404(billing_api: Api, resource: str) -> None:
    reply = billing_api.get(f"/v1/subscriptions/sub_missing/{resource}")

    assert reply.status == 404
    assert reply.body["code"] == "not_found"
    assert "sub_missing" in reply.body["message"]


@pytest.mark.parametrize("resource", ["usage", "invoices/proposed"])
def test_another_tenants_subscription_answers_404(
    o1: Subscribed, billing_api: Api, resource: str
) -> None:
    reply = billing_api.get(f"/v1/subscriptions/{o1.subscription_id}/{resource}", tenant="tenant-b")

    assert reply.status == 404
    assert reply.body["code"] == "not_found"


# --- listing events -------------------------------------------------------------------------


def _list(billing_api: Api, **parameters: str) -> Reply:
    return billing_api.get("/v1/events", query=urlencode(parameters))


def _all_pages(billing_api: Api, customer: str, limit: int) -> list[list[dict[str, Any]]]:
    pages = []
    cursor = None
    while True:
        parameters = {"external_customer_id": customer, "limit": str(limit)}
        if cursor is not None:
            parameters["cursor"] = cursor
        reply = _list(billing_api, **parameters)
        assert reply.status == 200, reply.body
        pages.append(reply.body["items"])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "the cursor never ran out"


def test_events_are_listed_newest_first_across_pages_without_gaps_or_repeats(
    billing_api: Api, ingest_api: Api
) -> None:
    # Eleven events over nine instants: two pairs share a timestamp and are ordered by id.
    seconds = [0, 1, 1, 2, 3, 4, 5, 5, 6, 7, 8]
    mine = [
        token_event(f"evt-{i:02d}", "input", "1", timestamp=f"{_YESTERDAY}T00:00:0{second}Z")
        for i, second in enumerate(seconds)
    ]
    theirs = [token_event("other-1", "input", "1", customer="globex")]
    send_events(ingest_api, [*mine, *theirs])

    pages = _all_pages(billing_api, O1_CUSTOMER, limit=4)

    listed = [item for page in pages for item in page]
    assert [len(page) for page in pages] == [4, 4, 3]
    expected = sorted(mine, key=lambda e: (e["timestamp"], e["event_id"]), reverse=True)
    assert [item["event_id"] for item in listed] == [e["event_id"] for e in expected]


def test_a_last_page_that_is_exactly_full_has_no_cursor(billing_api: Api, ingest_api: Api) -> None:
    events = [
        token_event(f"evt-{i}", "input", "1", timestamp=f"{_YESTERDAY}T00:00:0{i}Z")
        for i in range(8)
    ]
    send_events(ingest_api, events)

    pages = _all_pages(billing_api, O1_CUSTOMER, limit=4)

    assert [len(page) for page in pages] == [4, 4]


def test_listed_event_carries_what_was_sent(billing_api: Api, ingest_api: Api) -> None:
    event = {**token_event("evt-1", "input", "5000000"), "source": "sdk"}
    event["timestamp"] = f"{_YESTERDAY}T00:00:00Z"
    send_events(ingest_api, [event])

    reply = _list(billing_api, external_customer_id=O1_CUSTOMER)

    assert reply.status == 200
    [item] = reply.body["items"]
    assert item["event_id"] == "evt-1"
    assert item["timestamp"] == f"{_YESTERDAY}T00:00:00Z"
    assert item["properties"] == event["properties"]
    assert item["source"] == "sdk"
    assert reply.body["next_cursor"] is None


def test_events_of_another_tenant_are_not_listed(billing_api: Api, ingest_api: Api) -> None:
    send_events(ingest_api, [token_event("evt-1", "input", "1")])

    reply = _list(billing_api, external_customer_id=O1_CUSTOMER)
    elsewhere = billing_api.get(
        "/v1/events", query=f"external_customer_id={O1_CUSTOMER}", tenant="tenant-b"
    )

    assert [item["event_id"] for item in reply.body["items"]] == ["evt-1"]
    assert elsewhere.status == 200
    assert elsewhere.body["items"] == []


def test_listing_events_without_external_customer_id_is_refused(billing_api: Api) -> None:
    reply = _list(billing_api, limit="10")

    assert reply.status == 400
    assert reply.body["code"] == "validation_error"
    assert "external_customer_id" in reply.body["message"]
    assert reply.body["details"] == [{"field": "external_customer_id"}]


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten", "2.5", "\u00b2", " 5"])
def test_listing_events_with_a_bad_limit_is_refused(billing_api: Api, limit: str) -> None:
    reply = _list(billing_api, external_customer_id=O1_CUSTOMER, limit=limit)

    assert reply.status == 400
    assert reply.body["code"] == "validation_error"
    assert reply.body["details"] == [{"field": "limit"}]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "abc",
        _b64(b"not json"),
        _b64(json.dumps(["before"]).encode()),
        _b64(json.dumps({"after": "x"}).encode()),
        _b64(json.dumps({"before": 5}).encode()),
        _b64(b"\xff\xfe"),
    ],
)
def test_listing_events_with_a_cursor_it_never_returned_is_refused(
    billing_api: Api, cursor: str
) -> None:
    reply = _list(billing_api, external_customer_id=O1_CUSTOMER, cursor=cursor)

    assert reply.status == 400
    assert reply.body["code"] == "validation_error"
    assert "cursor" in reply.body["message"]
