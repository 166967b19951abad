"""The scheduled close through its functions: every ended period invoiced exactly once, numbered
without gaps per tenant, however often the close runs, overlaps or crashes, and usage that comes
late billed once, on the next invoice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterbill.errors import StorageUnavailable
from meterbill.invoicing import finalize_period
from meterbill.models import Invoice
from meterbill.notifications import EventPublisher
from meterbill.periods import Period
from meterbill.storage import Store
from tests.handlers.api import TENANT, Api
from tests.handlers.closing import (
    Closer,
    Daily,
    daily_plan,
    rfc3339,
    subscribe_daily,
    two_days_and_two_hours_ago,
)
from tests.handlers.scenario import send_events, token_event
from tests.handlers.stream import Deliver, StreamReader

HOUR = timedelta(hours=1)
Published = list[tuple[str, Invoice]]


def _listed(invoices_api: Api, query: str = "", tenant: str = TENANT) -> list[dict[str, Any]]:
    """Every invoice the listing returns for `query`, following the cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        page_query = query if cursor is None else f"{query}&cursor={cursor}".lstrip("&")
        reply = invoices_api.get("/v1/invoices", query=page_query, tenant=tenant)
        assert reply.status == 200, reply.body
        items.extend(reply.body["items"])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ran out")


def _periods(invoices: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i["number"], i["period_start"], i["period_end"]) for i in invoices]


def _lines(invoice: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(line["kind"], line["quantity"], line["amount"]) for line in invoice["line_items"]]


def _bounds(daily: Daily, index: int) -> tuple[str, str]:
    start, end = daily.period(index)
    return rfc3339(start), rfc3339(end)


def _meter(
    ingest_api: Api, stream: StreamReader, deliver: Deliver, events: list[dict[str, Any]]
) -> None:
    send_events(ingest_api, events)
    assert deliver(stream.new_event_records()) == {"batchItemFailures": []}


def _numbers(invoices_api: Api, tenant: str = TENANT) -> list[str]:
    return sorted(invoice["number"] for invoice in _listed(invoices_api, tenant=tenant))


# --- one invoice per period -----------------------------------------------------------------


def test_close_invoices_each_ended_period_with_its_flat_fee_and_usage(
    catalog_api: Api,
    ingest_api: Api,
    invoices_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    closer: Closer,
    published: Published,
) -> None:
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())
    _meter(
        ingest_api,
        stream,
        deliver,
        [
            token_event("p0", "input", "5000", timestamp=rfc3339(daily.period(0)[0] + HOUR)),
            token_event("p1", "input", "1500", timestamp=rfc3339(daily.period(1)[0] + HOUR)),
            token_event("p2", "input", "9000", timestamp=rfc3339(daily.period(2)[0] + HOUR)),
        ],
    )

    failed = closer.close(datetime.now(UTC))

    assert failed == []
    invoices = _listed(invoices_api, f"subscription_id={daily.subscription_id}")
    assert _periods(invoices) == [
        ("INV-000001", *_bounds(daily, 0)),
        ("INV-000002", *_bounds(daily, 1)),
    ]
    assert [_lines(invoice) for invoice in invoices] == [
        [("flat_fee", "1", "10.00"), ("usage", "5000", "5.00")],
        [("flat_fee", "1", "10.00"), ("usage", "1500", "1.50")],
    ]
    assert [(i["status"], i["total"]) for i in invoices] == [
        ("finalized", "15.00"),
        ("finalized", "11.50"),
    ]
    assert [(kind, invoice.number) for kind, invoice in published] == [
        ("invoice.finalized", "INV-000001"),
        ("invoice.finalized", "INV-000002"),
    ]


def test_period_is_not_invoiced_before_its_grace_period_is_over(
    catalog_api: Api, invoices_api: Api, closer: Closer
) -> None:
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())

    closer.close(daily.period(0)[1] + timedelta(minutes=59))

    assert _listed(invoices_api) == []


def test_close_run_again_or_a_message_delivered_twice_invoices_nothing_more(
    catalog_api: Api, invoices_api: Api, closer: Closer, published: Published
) -> None:
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())
    now = datetime.now(UTC)
    closer.close(now)

    again = closer.close(now)
    duplicate = closer.send(TENANT, daily.subscription_id, now)

    assert again == duplicate == []
    assert _periods(_listed(invoices_api)) == [
        ("INV-000001", *_bounds(daily, 0)),
        ("INV-000002", *_bounds(daily, 1)),
    ]
    assert [invoice.number for _, invoice in published] == ["INV-000001", "INV-000002"]


def test_overlapping_closes_of_one_period_finalize_a_single_invoice(
    catalog_api: Api, invoices_api: Api, closer: Closer, store: Store
) -> None:
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())
    subscription = store.get_subscription(TENANT, daily.subscription_id)
    assert subscription is not None
    now = datetime.now(UTC)

    # Two closes both finalize period 0 before either advances the subscription.
    first = finalize_period(store, TENANT, subscription, Period(*daily.period(0)), now)
    second = finalize_period(store, TENANT, subscription, Period(*daily.period(0)), now)
    closer.close(now)

    assert second == first
    assert _periods(_listed(invoices_api)) == [
        (first.number, *_bounds(daily, 0)),
        ("INV-000002", *_bounds(daily, 1)),
    ]
    assert first.number == "INV-000001"


def test_close_that_finds_the_subscription_advanced_by_another_close_adds_no_invoice(
    catalog_api: Api,
    invoices_api: Api,
    closer: Closer,
    published: Published,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())
    replace_subscription = Store.replace_subscription
    lost: list[bool] = []

    def loses_the_first_race(self: Store, *args: Any, **kwargs: Any) -> bool:
        if not lost:
            lost.append(True)
            return False  # the condition failed: as if another close had advanced it
        return replace_subscription(self, *args, **kwargs)

    monkeypatch.setattr(Store, "replace_subscription", loses_the_first_race)

    failed = closer.close(datetime.now(UTC))

    assert (failed, lost) == ([], [True])
    assert _periods(_listed(invoices_api)) == [
        ("INV-000001", *_bounds(daily, 0)),
        ("INV-000002", *_bounds(daily, 1)),
    ]
    assert {invoice.number for _, invoice in published} == {"INV-000001", "INV-000002"}


# --- crashes between the steps ----------------------------------------------------------------

# Where a close can stop: after each write of the protocol has succeeded (claim the draft, take
# a number, finalize, settle, free the number, advance the subscription, publish).
CRASH_AFTER = {
    "claim": (Store, "claim_invoice"),
    "number reserved": (Store, "reserve_invoice_number"),
    "finalized": (Store, "save_invoice"),
    "settled": (Store, "settle"),
    "number released": (Store, "release_invoice_number"),
    "advanced": (Store, "replace_subscription"),
    "published": (EventPublisher, "publish"),
}


def _crash_once_after(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[str]:
    """Make the first call of `owner.name` succeed, then fail as if the worker died there."""
    real: Callable[..., Any] = getattr(owner, name)
    crashed: list[str] = []

    def step(self: object, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        if not crashed:
            crashed.append(name)
            raise StorageUnavailable(f"the worker stopped after {name} (test)")
        return result

    monkeypatch.setattr(owner, name, step)
    return crashed


@pytest.mark.parametrize("step", CRASH_AFTER)
def test_crash_after_any_step_and_a_retry_leave_one_invoice_per_period_numbered_without_gaps(
    catalog_api: Api,
    invoices_api: Api,
    closer: Closer,
    store: Store,
    published: Published,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    plan_id = daily_plan(catalog_api)
    started = two_days_and_two_hours_ago()
    subscriptions = [
        subscribe_daily(catalog_api, plan_id, started, customer=customer)
        for customer in ("acme", "globex")
    ]
    crashed = _crash_once_after(monkeypatch, *CRASH_AFTER[step])

    first = closer.close(datetime.now(UTC))
    retried = closer.redeliver()

    # One message failed; the other subscription's close went on (and completed a number the
    # crash left pending); the redelivered message finished the job.
    assert crashed and len(first) == 1 and retried == []
    for daily in subscriptions:
        invoices = _listed(invoices_api, f"subscription_id={daily.subscription_id}")
        assert [(i["status"], i["period_start"], i["period_end"]) for i in invoices] == [
            ("finalized", *_bounds(daily, 0)),
            ("finalized", *_bounds(daily, 1)),
        ], daily
    assert _numbers(invoices_api) == ["INV-000001", "INV-000002", "INV-000003", "INV-000004"]
    # Read past the API: the numbering is free again, nothing is left pending.
    assert store.invoice_sequence(TENANT).get("pending") is None


@pytest.mark.parametrize(
    "failure", ["worker stopped after the advance", "event bus refused the event"]
)
def test_invoice_whose_event_was_not_published_is_published_when_the_close_is_retried(
    catalog_api: Api,
    closer: Closer,
    published: Published,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
) -> None:
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())
    if failure == "event bus refused the event":
        record = EventPublisher.publish
        refused: list[bool] = []

        def refuse_once(self: EventPublisher, detail_type: str, invoice: Invoice) -> None:
            if not refused:
                refused.append(True)
                raise StorageUnavailable("EventBridge refused the event (test)")
            record(self, detail_type, invoice)

        monkeypatch.setattr(EventPublisher, "publish", refuse_once)
    else:
        _crash_once_after(monkeypatch, Store, "replace_subscription")
    now = daily.due(0)

    first = closer.close(now)
    retried = closer.redeliver()

    assert len(first) == 1 and retried == []
    assert [(kind, invoice.number) for kind, invoice in published] == [
        ("invoice.finalized", "INV-000001")
    ]


# --- numbers --------------------------------------------------------------------------------


def test_each_tenant_numbers_its_invoices_from_inv_000001(
    catalog_api: Api, invoices_api: Api, closer: Closer
) -> None:
    started = two_days_and_two_hours_ago()
    for tenant in ("tenant-a", "tenant-b"):
        subscribe_daily(catalog_api, daily_plan(catalog_api, tenant), started, tenant=tenant)

    closer.close(datetime.now(UTC))

    assert _numbers(invoices_api, "tenant-a") == ["INV-000001", "INV-000002"]
    assert _numbers(invoices_api, "tenant-b") == ["INV-000001", "INV-000002"]


# --- late usage -----------------------------------------------------------------------------


def test_late_usage_is_billed_once_on_the_next_invoice_and_the_invoiced_period_never_changes(
    catalog_api: Api,
    ingest_api: Api,
    billing_api: Api,
    invoices_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    closer: Closer,
) -> None:
    daily = subscribe_daily(catalog_api, daily_plan(catalog_api), two_days_and_two_hours_ago())
    in_period_0 = daily.period(0)[0] + HOUR
    _meter(
        ingest_api,
        stream,
        deliver,
        [token_event("on-time", "input", "5000", timestamp=rfc3339(in_period_0))],
    )
    closer.close(daily.due(0))
    [invoiced] = _listed(invoices_api)

    late = ingest_api.post(
        "/v1/events", token_event("late", "input", "2000", timestamp=rfc3339(in_period_0))
    )
    deliver(stream.new_event_records())
    proposed = billing_api.get(f"/v1/subscriptions/{daily.subscription_id}/invoices/proposed")
    closer.close(datetime.now(UTC))
    closer.close(datetime.now(UTC))
    closer.close(daily.due(2))

    assert late.status == 202
    assert invoices_api.get(f"/v1/invoices/{invoiced['id']}").body == invoiced
    late_line = {
        "kind": "late_usage",
        "quantity": "2000",
        "amount": "2.00",
        "period_start": rfc3339(daily.period(0)[0]),
        "period_end": rfc3339(daily.period(0)[1]),
    }
    proposed_late = [line for line in proposed.body["line_items"] if line["kind"] == "late_usage"]
    assert [(line["quantity"], line["amount"]) for line in proposed_late] == [("2000", "2.00")]
    first, following, last = _listed(invoices_api)
    assert first == invoiced
    assert [{key: line[key] for key in late_line} for line in following["line_items"]] == [
        {**late_line, "kind": "flat_fee", "quantity": "1", "amount": "10.00", **_span(daily, 1)},
        {**late_line, "kind": "usage", "quantity": "0", "amount": "0.00", **_span(daily, 1)},
        late_line,
    ]
    assert following["total"] == "12.00"
    assert [line["kind"] for line in last["line_items"]] == ["flat_fee", "usage"]
    assert last["total"] == "10.00"


def _span(daily: Daily, index: int) -> dict[str, str]:
    start, end = _bounds(daily, index)
    return {"period_start": start, "period_end": end}


def test_a_repair_before_the_backfill_leaves_the_backfill_nothing_to_add(
    store: Store, catalog_api: Api, ingest_api: Api, stream: StreamReader, deliver: Deliver
) -> None:
    from meterbill.recount import backfill_subscription, reconcile_customer

    feature = catalog_api.post(
        "/v1/features",
        {
            "name": "n",
            "lookup_key": "n",
            "event_name": "api",
            "aggregation": {"type": "SUM", "field": "n"},
        },
    ).body
    price = {"feature_id": feature["id"], "billing_model": "PER_UNIT", "amount": "1"}
    plan = catalog_api.post(
        "/v1/plans", {"name": "p", "lookup_key": "p", "currency": "USD", "prices": [price]}
    ).body
    customer = catalog_api.post("/v1/customers", {"external_id": "bf", "name": "bf"}).body
    stamp = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "event_id": "old",
        "event_name": "api",
        "external_customer_id": "bf",
        "timestamp": stamp,
    }
    assert ingest_api.post("/v1/events", {**event, "properties": {"n": 100}}).status == 202
    deliver(stream.new_event_records())
    start = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    subscription = catalog_api.post(
        "/v1/subscriptions",
        {"customer_id": customer["id"], "plan_id": plan["id"], "start_date": start},
    ).body

    reconcile_customer(store, "tenant-a", customer["id"], datetime.now(UTC), repair=True)
    backfill_subscription(store, "tenant-a", subscription["id"])

    assert reconcile_customer(store, "tenant-a", customer["id"], datetime.now(UTC)) == []
    quantities = store.period_quantities(
        "tenant-a", subscription["id"], datetime.fromisoformat(start.replace("Z", "+00:00"))
    )
    assert quantities == {feature["id"]: Decimal(100)}
