"""Every aggregation through ingest, the stream and the aggregator, redelivered batches included,
and the usage windows read back from the window counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.handlers.api import Api
from tests.handlers.stream import Deliver, StreamReader

EVENT = "api.call"
CUSTOMER = "globex"


def _subscribe(
    catalog_api: Api, aggregation: dict[str, Any], timezone: str = "UTC"
) -> dict[str, str]:
    feature = catalog_api.post(
        "/v1/features",
        {"name": "calls", "lookup_key": "calls", "event_name": EVENT, "aggregation": aggregation},
    )
    assert feature.status == 201, feature.body
    price = {"feature_id": feature.body["id"], "billing_model": "PER_UNIT", "amount": "1"}
    plan = catalog_api.post(
        "/v1/plans", {"name": "p", "lookup_key": "p", "currency": "USD", "prices": [price]}
    )
    customer = catalog_api.post(
        "/v1/customers", {"external_id": CUSTOMER, "name": "Globex", "timezone": timezone}
    )
    start = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    subscription = catalog_api.post(
        "/v1/subscriptions",
        {"customer_id": customer.body["id"], "plan_id": plan.body["id"], "start_date": start},
    )
    assert subscription.status == 201, subscription.body
    return {
        "feature": feature.body["id"],
        "customer": customer.body["id"],
        "subscription": subscription.body["id"],
    }


def _send(ingest_api: Api, values: list[tuple[str, Any, str]]) -> None:
    """(event id, value of `v`, timestamp) triples."""
    events = [
        {
            "event_id": event_id,
            "event_name": EVENT,
            "external_customer_id": CUSTOMER,
            "timestamp": timestamp,
            "properties": {"v": value},
        }
        for event_id, value, timestamp in values
    ]
    reply = ingest_api.post("/v1/events/bulk", {"events": events})
    assert reply.status == 202, reply.body


def _ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(billing_api: Api, ids: dict[str, str]) -> str:
    usage = billing_api.get(f"/v1/subscriptions/{ids['subscription']}/usage")
    assert usage.status == 200, usage.body
    quantity: str = usage.body["items"][0]["quantity"]
    return quantity


USAGE = [("e1", "7", 30), ("e2", -2, 20), ("e3", "7.0", 25), ("e4", 3, 10), ("e5", "2E+1", 40)]


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        ({"type": "SUM", "field": "v"}, "35"),
        ({"type": "COUNT"}, "5"),
        ({"type": "MAX", "field": "v"}, "20"),
        ({"type": "MIN", "field": "v"}, "-2"),
        ({"type": "AVG", "field": "v"}, "7"),
        ({"type": "UNIQUE_COUNT", "field": "v"}, "4"),  # 7 and "7.0" are one value
        ({"type": "LATEST", "field": "v"}, "3"),  # e4 is the most recent event
    ],
)
def test_each_aggregation_counts_once_even_when_the_batch_is_redelivered(
    catalog_api: Api,
    ingest_api: Api,
    billing_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    aggregation: dict[str, Any],
    expected: str,
) -> None:
    ids = _subscribe(catalog_api, aggregation)
    _send(ingest_api, [(event_id, value, _ago(minutes)) for event_id, value, minutes in USAGE])
    records = stream.new_event_records()

    assert deliver(records) == {"batchItemFailures": []}
    assert deliver(records) == {"batchItemFailures": []}
    assert deliver(records[2:]) == {"batchItemFailures": []}

    assert Decimal(_quantity(billing_api, ids)) == Decimal(expected)


def test_average_is_kept_to_twelve_places_half_up(
    catalog_api: Api, ingest_api: Api, billing_api: Api, stream: StreamReader, deliver: Deliver
) -> None:
    ids = _subscribe(catalog_api, {"type": "AVG", "field": "v"})
    _send(ingest_api, [("a", 1, _ago(3)), ("b", 1, _ago(2)), ("c", 0, _ago(1))])

    deliver(stream.new_event_records())

    assert _quantity(billing_api, ids) == "0.666666666667"


def test_ties_in_latest_go_to_the_greatest_event_id(
    catalog_api: Api, ingest_api: Api, billing_api: Api, stream: StreamReader, deliver: Deliver
) -> None:
    ids = _subscribe(catalog_api, {"type": "LATEST", "field": "v"})
    same_time = _ago(5)
    _send(ingest_api, [("b", 2, same_time), ("c", 3, same_time), ("a", 1, same_time)])

    deliver(stream.new_event_records())

    assert _quantity(billing_api, ids) == "3"


def test_a_unique_count_event_without_its_property_is_refused(
    catalog_api: Api, ingest_api: Api
) -> None:
    _subscribe(catalog_api, {"type": "UNIQUE_COUNT", "field": "user"})

    reply = ingest_api.post(
        "/v1/events", {"event_name": EVENT, "external_customer_id": CUSTOMER, "properties": {}}
    )

    assert reply.status == 400
    assert "properties.user" in reply.body["message"]
    assert "be present" in reply.body["message"]


def test_usage_windows_sum_the_events_of_each_local_hour(
    catalog_api: Api, ingest_api: Api, billing_api: Api, stream: StreamReader, deliver: Deliver
) -> None:
    ids = _subscribe(catalog_api, {"type": "SUM", "field": "v"}, timezone="Asia/Kolkata")
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    # Kolkata hours start at hh:30 UTC: 10:10 and 10:40 UTC fall in different local hours.
    stamps = [base + timedelta(minutes=10), base + timedelta(minutes=40), base + timedelta(hours=2)]
    _send(
        ingest_api, [(f"w{i}", 5, t.strftime("%Y-%m-%dT%H:%M:%SZ")) for i, t in enumerate(stamps)]
    )
    deliver(stream.new_event_records())

    query = (
        f"feature_id={ids['feature']}&window=HOUR&from={base:%Y-%m-%dT%H:%M:%SZ}"
        f"&to={base + timedelta(hours=3):%Y-%m-%dT%H:%M:%SZ}"
    )
    chart = billing_api.get(f"/v1/customers/{ids['customer']}/usage", query=query)

    assert chart.status == 200, chart.body
    assert chart.body["timezone"] == "Asia/Kolkata"
    first_start = (base - timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert chart.body["items"][0]["start"] == first_start
    values = [item["value"] for item in chart.body["items"]]
    # Local hours [-30m, +30m), [+30m, +90m), [+90m, +150m), [+150m, +210m) around `base`.
    assert values == ["5", "5", "5", "0"]


def test_usage_windows_reject_a_bad_window_and_an_unknown_feature(
    catalog_api: Api, billing_api: Api
) -> None:
    ids = _subscribe(catalog_api, {"type": "COUNT"})
    path = f"/v1/customers/{ids['customer']}/usage"
    span = "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z"

    bad_window = billing_api.get(path, query=f"feature_id={ids['feature']}&window=WEEK&{span}")
    unknown = billing_api.get(path, query=f"feature_id=feat_nope&window=DAY&{span}")
    too_long = billing_api.get(
        path,
        query=f"feature_id={ids['feature']}&window=HOUR&from=2026-01-01T00:00:00Z"
        "&to=2026-03-01T00:00:00Z",
    )

    assert (bad_window.status, bad_window.body["details"][0]["field"]) == (400, "window")
    assert unknown.status == 404
    assert too_long.status == 400
