"""The invoices function: listing, reading and voiding final invoices, and cancelling a
subscription now (a last, partial invoice) or at the end of its period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from meterbill.models import Invoice
from meterbill.periods import parse_instant
from tests.handlers.api import Api, Reply
from tests.handlers.closing import (
    DAY,
    Closer,
    Daily,
    daily_plan,
    rfc3339,
    subscribe_daily,
    two_days_and_two_hours_ago,
)
from tests.handlers.scenario import send_events, token_event
from tests.handlers.stream import Deliver, StreamReader

Published = list[tuple[str, Invoice]]


def _page(invoices_api: Api, query: str) -> Reply:
    reply = invoices_api.get("/v1/invoices", query=query)
    assert reply.status == 200, reply.body
    return reply


def _pages(invoices_api: Api, query: str) -> list[list[str]]:
    """The numbers on each page of a listing, following the cursor to the end."""
    pages = []
    reply = _page(invoices_api, query)
    while True:
        pages.append([invoice["number"] for invoice in reply.body["items"]])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "the cursor never ran out"
        reply = _page(invoices_api, f"{query}&cursor={cursor}")


def _numbers(invoices_api: Api, query: str) -> list[str]:
    return [number for page in _pages(invoices_api, query) for number in page]


def _cancel(invoices_api: Api, daily: Daily, at: str) -> Reply:
    return invoices_api.post(f"/v1/subscriptions/{daily.subscription_id}/cancel", {"at": at})


@pytest.fixture
def daily(catalog_api: Api) -> Daily:
    return subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())


# --- listing ----------------------------------------------------------------------------------


@pytest.fixture
def three_subscriptions(catalog_api: Api, invoices_api: Api, closer: Closer) -> list[Daily]:
    """Two subscriptions of one customer and one of another, each with its first period
    invoiced."""
    plan_id = daily_plan(catalog_api)
    started = two_days_and_two_hours_ago()
    subscriptions = [
        subscribe_daily(catalog_api, plan_id, started, customer=customer)
        for customer in ("acme", "acme", "globex")
    ]
    closer.close(subscriptions[0].due(0))
    return subscriptions


def test_listing_pages_through_every_invoice_by_number(
    invoices_api: Api, three_subscriptions: list[Daily]
) -> None:
    pages = _pages(invoices_api, "limit=2")

    assert pages == [["INV-000001", "INV-000002"], ["INV-000003"]]


def test_a_listing_that_fills_its_last_page_exactly_has_no_cursor(
    invoices_api: Api, three_subscriptions: list[Daily]
) -> None:
    pages = _pages(invoices_api, "limit=3")

    assert pages == [["INV-000001", "INV-000002", "INV-000003"]]


def test_listing_filters_by_subscription_customer_and_status(
    invoices_api: Api, three_subscriptions: list[Daily]
) -> None:
    first, second, other = three_subscriptions
    [voided] = _page(invoices_api, f"subscription_id={first.subscription_id}&limit=1").body["items"]
    assert invoices_api.post(f"/v1/invoices/{voided['id']}/void", {}).status == 200

    of = {
        d.subscription_id: _numbers(invoices_api, f"subscription_id={d.subscription_id}&limit=1")
        for d in three_subscriptions
    }
    of_acme = _numbers(invoices_api, f"customer_id={first.customer_id}&limit=1")
    of_globex = _numbers(invoices_api, f"customer_id={other.customer_id}")
    void = _numbers(invoices_api, "status=void")
    finalized_of_acme = _numbers(invoices_api, f"customer_id={first.customer_id}&status=finalized")

    assert sorted(number for numbers in of.values() for number in numbers) == [
        "INV-000001",
        "INV-000002",
        "INV-000003",
    ]
    assert of_acme == sorted(of[first.subscription_id] + of[second.subscription_id])
    assert of_globex == of[other.subscription_id]
    assert void == [voided["number"]]
    assert finalized_of_acme == [number for number in of_acme if number != voided["number"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=draft", "status"),
        ("subscription_id=sub_1&customer_id=cus_1", "customer_id"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
    ],
)
def test_listing_with_a_bad_filter_is_refused_naming_it(
    invoices_api: Api, query: str, field: str
) -> None:
    reply = invoices_api.get("/v1/invoices", query=query)

    assert reply.status == 400
    assert reply.body["details"][0]["field"] == field


# --- reading and voiding ----------------------------------------------------------------------


def test_void_keeps_the_invoice_marked_void_once_however_often_it_is_asked(
    invoices_api: Api, daily: Daily, closer: Closer, published: Published
) -> None:
    closer.close(datetime.now(UTC))
    first, second = _page(invoices_api, "").body["items"]

    voided = invoices_api.post(f"/v1/invoices/{first['id']}/void", {})
    again = invoices_api.post(f"/v1/invoices/{first['id']}/void", {})
    read = invoices_api.get(f"/v1/invoices/{first['id']}")

    assert voided.status == again.status == read.status == 200
    assert voided.body["status"] == "void"
    assert voided.body["voided_at"] is not None
    assert again.body == read.body == voided.body
    # Nothing else changes: same number, lines and total.
    unchanged = {key: value for key, value in first.items() if key not in ("status", "voided_at")}
    assert {key: read.body[key] for key in unchanged} == unchanged
    assert invoices_api.get(f"/v1/invoices/{second['id']}").body == second
    assert [(kind, invoice.number) for kind, invoice in published] == [
        ("invoice.finalized", "INV-000001"),
        ("invoice.finalized", "INV-000002"),
        ("invoice.voided", "INV-000001"),
    ]


@pytest.mark.parametrize(("method", "path"), [("GET", ""), ("POST", "/void")])
def test_unknown_invoice_is_not_found(invoices_api: Api, method: str, path: str) -> None:
    reply = invoices_api.send(method, f"/v1/invoices/inv_nosuchinvoice{path}", body="{}")

    assert reply.status == 404
    assert reply.body["code"] == "not_found"


def test_finalized_invoice_is_unchanged_by_later_closes_and_usage(
    ingest_api: Api,
    invoices_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    daily: Daily,
    closer: Closer,
) -> None:
    closer.close(daily.due(0))
    [invoiced] = _page(invoices_api, "").body["items"]
    stamp = rfc3339(daily.period(1)[0] + timedelta(hours=1))
    send_events(ingest_api, [token_event("next-period", "input", "7000", timestamp=stamp)])
    deliver(stream.new_event_records())

    closer.close(daily.due(1))
    closer.close(daily.due(2))

    assert invoices_api.get(f"/v1/invoices/{invoiced['id']}").body == invoiced
    assert _numbers(invoices_api, "") == ["INV-000001", "INV-000002", "INV-000003"]


# --- cancelling -------------------------------------------------------------------------------


def test_cancel_now_invoices_the_partial_period_with_a_prorated_fee_and_the_usage_so_far(
    catalog_api: Api,
    ingest_api: Api,
    invoices_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    closer: Closer,
    published: Published,
) -> None:
    # A fee of 86,400.00 a day is 1.00 a second: the prorated fee reads as whole seconds.
    plan_id = daily_plan(catalog_api, flat_fee="86400.00")
    daily = subscribe_daily(catalog_api, plan_id, two_days_and_two_hours_ago())
    closer.close(datetime.now(UTC))
    so_far = rfc3339(daily.period(2)[0] + timedelta(minutes=30))
    send_events(ingest_api, [token_event("so-far", "input", "3000", timestamp=so_far)])
    deliver(stream.new_event_records())

    reply = _cancel(invoices_api, daily, "now")

    assert reply.status == 200, reply.body
    subscription = reply.body["subscription"]
    assert subscription["status"] == "canceled"
    [last] = reply.body["invoices"]
    ended = parse_instant(subscription["ended_at"])
    start = daily.period(2)[0]
    assert start < ended < start + DAY
    assert (last["number"], last["period_start"], last["period_end"]) == (
        "INV-000003",
        rfc3339(start),
        subscription["ended_at"],
    )
    seconds = int((ended - start).total_seconds())
    assert [(line["kind"], line["quantity"], line["amount"]) for line in last["line_items"]] == [
        ("flat_fee", "1", f"{seconds}.00"),
        ("usage", "3000", "3.00"),
    ]
    assert published[-1][0] == "invoice.finalized"
    assert published[-1][1].number == "INV-000003"


def test_usage_after_cancel_now_is_not_counted_and_nothing_more_is_invoiced(
    ingest_api: Api,
    billing_api: Api,
    invoices_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    daily: Daily,
    closer: Closer,
) -> None:
    so_far = rfc3339(daily.period(2)[0] + timedelta(minutes=30))
    send_events(ingest_api, [token_event("so-far", "input", "3000", timestamp=so_far)])
    deliver(stream.new_event_records())
    assert _cancel(invoices_api, daily, "now").status == 200

    # Stamped when received, after the cancellation.
    send_events(ingest_api, [token_event("after", "input", "4000")])
    deliver(stream.new_event_records())
    closer.close(daily.due(2))
    closer.close(daily.due(5))

    usage = billing_api.get(f"/v1/subscriptions/{daily.subscription_id}/usage")
    assert [item["quantity"] for item in usage.body["items"]] == ["3000"]
    assert _numbers(invoices_api, "") == ["INV-000001", "INV-000002", "INV-000003"]


@pytest.mark.parametrize("at", ["now", "period_end"])
def test_cancelling_a_canceled_subscription_is_a_conflict(
    invoices_api: Api, daily: Daily, at: str
) -> None:
    assert _cancel(invoices_api, daily, "now").status == 200

    again = _cancel(invoices_api, daily, at)

    assert again.status == 409
    assert again.body["code"] == "conflict"


def test_cancel_of_an_unknown_subscription_is_not_found(invoices_api: Api) -> None:
    reply = invoices_api.post("/v1/subscriptions/sub_nosuchsubscription/cancel", {"at": "now"})

    assert reply.status == 404


def test_cancel_needs_now_or_period_end(invoices_api: Api, daily: Daily) -> None:
    reply = _cancel(invoices_api, daily, "tomorrow")

    assert reply.status == 400
    assert reply.body["details"][0]["field"] == "at"


def test_cancel_at_period_end_invoices_the_period_in_full_then_stops(
    catalog_api: Api, invoices_api: Api, closer: Closer
) -> None:
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), started)

    reply = _cancel(invoices_api, daily, "period_end")
    closer.close(daily.due(0))
    closer.close(daily.due(3))

    assert reply.status == 200, reply.body
    assert reply.body["invoices"] == []
    assert reply.body["subscription"]["status"] == "active"
    [last] = _page(invoices_api, "").body["items"]
    assert (last["period_start"], last["period_end"]) == tuple(map(rfc3339, daily.period(0)))
    assert last["line_items"][0]["amount"] == "10.00"
    subscription = catalog_api.get(f"/v1/subscriptions/{daily.subscription_id}").body
    assert (subscription["status"], subscription["ended_at"]) == (
        "canceled",
        rfc3339(daily.period(0)[1]),
    )


def test_cancel_at_period_end_during_the_grace_period_still_bills_the_running_period(
    catalog_api: Api, invoices_api: Api, closer: Closer
) -> None:
    # Period 0 ended half an hour ago and awaits its close; period 1 runs, and is the last.
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1, minutes=30)
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), started)

    reply = _cancel(invoices_api, daily, "period_end")
    closer.close(daily.due(0))
    closer.close(daily.due(1))
    closer.close(daily.due(3))

    assert reply.status == 200, reply.body
    invoiced = [(i["period_start"], i["period_end"]) for i in _page(invoices_api, "").body["items"]]
    assert invoiced == [tuple(map(rfc3339, daily.period(index))) for index in (0, 1)]
    subscription = catalog_api.get(f"/v1/subscriptions/{daily.subscription_id}").body
    assert (subscription["status"], subscription["ended_at"]) == (
        "canceled",
        rfc3339(daily.period(1)[1]),
    )
