"""The ingest function: single and bulk usage events, stored once each, acknowledged only when
every accepted event is durably written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from meterbill.errors import StorageUnavailable
from meterbill.models import StoredEvent
from meterbill.storage import Store
from tests.handlers.api import Api
from tests.handlers.scenario import O1_CUSTOMER, token_event, token_feature


def _stored_event_ids(store: Store) -> list[str]:
    """Every event item in the table, read past the API: what was really written."""
    ids: list[str] = []
    paginator = store.client.get_paginator("scan")
    for page in paginator.paginate(
        TableName=store.table_name,
        FilterExpression="#type = :event",
        ExpressionAttributeNames={"#type": "type"},
        ExpressionAttributeValues={":event": {"S": "event"}},
    ):
        ids.extend(item["event_id"]["S"] for item in page["Items"])
    return sorted(ids)


def _events(count: int, prefix: str = "evt") -> list[dict[str, Any]]:
    return [token_event(f"{prefix}-{index}", "input", "1000") for index in range(count)]


# --- single events --------------------------------------------------------------------------


def test_single_event_answers_202_with_its_id_and_only_string_values(
    ingest_api: Api, store: Store
) -> None:
    reply = ingest_api.post("/v1/events", token_event("req-1", "input", "5000000"))

    assert reply.status == 202
    assert set(reply.body) == {"event_id", "message"}
    assert all(isinstance(value, str) for value in reply.body.values())
    assert reply.body["event_id"] == "req-1"
    assert _stored_event_ids(store) == ["req-1"]


def test_single_event_without_an_id_gets_one_made_by_the_server(
    ingest_api: Api, store: Store
) -> None:
    event = token_event("unused", "input", "10")
    del event["event_id"]

    first = ingest_api.post("/v1/events", event)
    second = ingest_api.post("/v1/events", event)

    assert first.status == second.status == 202
    assert first.body["event_id"].startswith("evt_")
    assert first.body["event_id"] != second.body["event_id"]
    assert _stored_event_ids(store) == sorted([first.body["event_id"], second.body["event_id"]])


def test_single_event_sent_twice_is_stored_once_and_acknowledged_both_times(
    ingest_api: Api, store: Store
) -> None:
    event = token_event("req-1", "input", "10")

    first = ingest_api.post("/v1/events", event)
    again = ingest_api.post("/v1/events", event)

    assert first.status == again.status == 202
    assert again.body["event_id"] == "req-1"
    assert first.body["message"] != again.body["message"]
    assert _stored_event_ids(store) == ["req-1"]


def test_single_event_keeps_its_properties_and_timestamp(ingest_api: Api, store: Store) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    event = token_event("req-1", "input", "5000000", timestamp=f"{yesterday}T12:00:00+01:00")

    reply = ingest_api.post("/v1/events", event)
    page = store.list_customer_events("tenant-a", O1_CUSTOMER, 10, None)

    assert reply.status == 202
    [stored] = page.events
    assert stored.timestamp.isoformat() == f"{yesterday}T11:00:00+00:00"
    assert stored.properties == {"model": "OpenAI O1", "prompt_type": "input", "tokens": "5000000"}


# --- bulk -----------------------------------------------------------------------------------


def test_bulk_answers_202_with_accepted_and_duplicates_as_strings(
    ingest_api: Api, store: Store
) -> None:
    reply = ingest_api.post("/v1/events/bulk", {"events": _events(3)})

    assert reply.status == 202
    assert reply.body["accepted"] == "3"
    assert reply.body["duplicates"] == "0"
    assert all(isinstance(value, str) for value in reply.body.values())
    assert _stored_event_ids(store) == ["evt-0", "evt-1", "evt-2"]


def test_bulk_sent_twice_reports_every_event_a_duplicate_the_second_time(
    ingest_api: Api, store: Store
) -> None:
    events = _events(4)
    ingest_api.post("/v1/events/bulk", {"events": events})

    again = ingest_api.post("/v1/events/bulk", {"events": events})

    assert again.status == 202
    assert (again.body["accepted"], again.body["duplicates"]) == ("0", "4")
    assert _stored_event_ids(store) == ["evt-0", "evt-1", "evt-2", "evt-3"]


def test_bulk_with_an_event_id_twice_stores_it_once(ingest_api: Api, store: Store) -> None:
    events = [*_events(2), token_event("evt-0", "input", "999")]

    reply = ingest_api.post("/v1/events/bulk", {"events": events})

    assert reply.status == 202
    assert (reply.body["accepted"], reply.body["duplicates"]) == ("2", "1")
    assert _stored_event_ids(store) == ["evt-0", "evt-1"]
    # The first occurrence wins; its later twin changes nothing.
    stored = store.list_customer_events("tenant-a", O1_CUSTOMER, 10, None).events
    assert {e.event_id: e.properties["tokens"] for e in stored} == {
        "evt-0": "1000",
        "evt-1": "1000",
    }


def test_bulk_with_one_invalid_event_is_refused_whole_and_stores_nothing(
    ingest_api: Api, store: Store
) -> None:
    events = _events(5)
    del events[2]["event_name"]

    reply = ingest_api.post("/v1/events/bulk", {"events": events})

    assert reply.status == 400
    assert reply.body["code"] == "validation_error"
    assert "events.2.event_name" in reply.body["message"]
    assert reply.body["details"] == [
        {"index": 2, "field": "events.2.event_name", "message": "is required"}
    ]
    assert _stored_event_ids(store) == []


def test_bulk_error_lists_one_detail_per_invalid_event(ingest_api: Api, store: Store) -> None:
    events = _events(6)
    events[1]["timestamp"] = "last tuesday"
    events[4]["external_customer_id"] = ""
    events[5] = "not an event"

    reply = ingest_api.post("/v1/events/bulk", {"events": events})

    assert reply.status == 400
    assert [(d["index"], d["field"]) for d in reply.body["details"]] == [
        (1, "events.1.timestamp"),
        (4, "events.4.external_customer_id"),
        (5, "events.5"),
    ]
    assert reply.body["message"].startswith("3 of 6 events are invalid")
    assert _stored_event_ids(store) == []


@pytest.mark.parametrize("count", [0, 1001])
def test_bulk_outside_1_to_1000_events_is_refused(
    ingest_api: Api, store: Store, count: int
) -> None:
    reply = ingest_api.post("/v1/events/bulk", {"events": _events(count)})

    assert reply.status == 400
    assert reply.body["code"] == "validation_error"
    assert reply.body["details"][0]["field"] == "events"
    assert _stored_event_ids(store) == []


def test_bulk_of_exactly_1000_events_is_accepted(
    ingest_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The limit is under test, not moto: 1,000 real conditional puts would take seconds.
    written: list[str] = []

    def put_event(self: Store, event: StoredEvent) -> bool:
        written.append(event.event_id)
        return True

    monkeypatch.setattr(Store, "put_event", put_event)

    reply = ingest_api.post("/v1/events/bulk", {"events": _events(1000)})

    assert reply.status == 202
    assert reply.body["accepted"] == "1000"
    assert len(set(written)) == 1000


# --- values a summing feature needs ---------------------------------------------------------


@pytest.fixture
def input_tokens_feature(catalog_api: Api) -> dict[str, Any]:
    reply = catalog_api.post("/v1/features", token_feature("input"))
    assert reply.status == 201
    return reply.body


@pytest.mark.parametrize(
    "tokens", [None, "many", True, ""], ids=["absent", "text", "bool", "empty"]
)
def test_event_matching_a_sum_feature_without_a_number_is_refused_naming_property_and_feature(
    ingest_api: Api, store: Store, input_tokens_feature: dict[str, Any], tokens: object
) -> None:
    event = token_event("req-1", "input", "0")
    if tokens is None:
        del event["properties"]["tokens"]
    else:
        event["properties"]["tokens"] = tokens

    reply = ingest_api.post("/v1/events", event)

    assert reply.status == 400
    assert reply.body["code"] == "validation_error"
    assert reply.body["details"][0]["field"] == "properties.tokens"
    assert "'tokens'" in reply.body["message"]
    assert "o1-input-tokens" in reply.body["message"]
    assert input_tokens_feature["id"] in reply.body["message"]
    assert _stored_event_ids(store) == []


def test_event_the_sum_feature_filters_out_needs_no_number(
    ingest_api: Api, input_tokens_feature: dict[str, Any]
) -> None:
    event = token_event("req-1", "output", "0")
    del event["properties"]["tokens"]

    reply = ingest_api.post("/v1/events", event)

    assert reply.status == 202


@pytest.mark.parametrize("tokens", ["5000000", "42", "0.5", 7, "1e3"])
def test_numeric_values_and_numeric_strings_are_accepted_for_a_sum_feature(
    ingest_api: Api, store: Store, input_tokens_feature: dict[str, Any], tokens: object
) -> None:
    event = token_event("req-1", "input", "0")
    event["properties"]["tokens"] = tokens

    reply = ingest_api.post("/v1/events", event)

    assert reply.status == 202, reply.body
    assert _stored_event_ids(store) == ["req-1"]


def test_bulk_names_the_index_of_the_event_missing_a_summed_value(
    ingest_api: Api, store: Store, input_tokens_feature: dict[str, Any]
) -> None:
    events = _events(3)
    events[1]["properties"]["tokens"] = "lots"

    reply = ingest_api.post("/v1/events/bulk", {"events": events})

    assert reply.status == 400
    assert [(d["index"], d["field"]) for d in reply.body["details"]] == [
        (1, "events.1.properties.tokens")
    ]
    assert _stored_event_ids(store) == []


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-02-30T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-05:00",
        "0999-06-01T00:00:00Z",
    ],
    ids=["no-such-day", "before-year-1", "after-year-9999", "three-digit-year"],
)
def test_event_timestamp_that_cannot_be_a_billing_instant_is_refused_with_400(
    ingest_api: Api, store: Store, timestamp: str
) -> None:
    event = token_event("req-1", "input", "1", timestamp=timestamp)

    reply = ingest_api.post("/v1/events", event)

    assert reply.status == 400, reply.body
    assert reply.body["details"][0]["field"] == "timestamp"
    assert _stored_event_ids(store) == []


def _stamped(event_id: str, age: timedelta) -> dict[str, Any]:
    """An event stamped `age` before now (negative: in the future)."""
    instant = datetime.now(UTC) - age
    return token_event(event_id, "input", "1", timestamp=instant.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.mark.parametrize(
    "age",
    [timedelta(days=35, minutes=1), -timedelta(minutes=6)],
    ids=["beyond-the-35-day-backdating-limit", "more-than-5-minutes-ahead"],
)
def test_event_outside_the_accepted_time_window_is_refused_naming_timestamp(
    ingest_api: Api, store: Store, age: timedelta
) -> None:
    reply = ingest_api.post("/v1/events", _stamped("req-1", age))

    assert reply.status == 400, reply.body
    assert reply.body["details"][0]["field"] == "timestamp"
    assert reply.body["message"].startswith("timestamp ")
    assert _stored_event_ids(store) == []


def test_events_just_inside_the_time_window_are_accepted(ingest_api: Api, store: Store) -> None:
    events = [
        _stamped("old", timedelta(days=34, hours=23)),
        _stamped("ahead", -timedelta(minutes=4)),
    ]

    reply = ingest_api.post("/v1/events/bulk", {"events": events})

    assert reply.status == 202, reply.body
    assert _stored_event_ids(store) == ["ahead", "old"]


def test_bulk_with_one_event_beyond_the_backdating_limit_stores_nothing(
    ingest_api: Api, store: Store
) -> None:
    events = [_stamped("fresh", timedelta(hours=1)), _stamped("stale", timedelta(days=40))]

    reply = ingest_api.post("/v1/events/bulk", {"events": events})

    assert reply.status == 400
    assert reply.body["details"][0]["index"] == 1
    assert reply.body["details"][0]["field"] == "events.1.timestamp"
    assert _stored_event_ids(store) == []


def test_tenants_own_backdating_limit_refuses_older_events_for_that_tenant_only(
    ingest_api: Api, catalog_api: Api, store: Store
) -> None:
    settings = {"invoice_grace_period_seconds": 3600, "backdating_limit_days": 2}
    assert catalog_api.send("PUT", "/v1/settings", body=json.dumps(settings)).status == 200

    three_days = ingest_api.post("/v1/events", _stamped("three-days", timedelta(days=3)))
    one_day = ingest_api.post("/v1/events", _stamped("one-day", timedelta(days=1)))
    elsewhere = ingest_api.post("/v1/events", _stamped("b", timedelta(days=3)), tenant="tenant-b")

    assert three_days.status == 400
    assert three_days.body["details"][0]["field"] == "timestamp"
    assert "2 days" in three_days.body["message"]
    assert (one_day.status, elsewhere.status) == (202, 202)
    assert _stored_event_ids(store) == ["b", "one-day"]


# --- storage failures -----------------------------------------------------------------------


def test_storage_failure_while_writing_answers_503_not_202(
    ingest_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(self: Store, event: StoredEvent) -> bool:
        raise StorageUnavailable("the usage store is unavailable (test); retry the request")

    monkeypatch.setattr(Store, "put_event", unavailable)

    reply = ingest_api.post("/v1/events/bulk", {"events": _events(2)})

    assert reply.status == 503
    assert reply.body["code"] == "storage_unavailable"
    assert reply.body["http_status_code"] == 503


def test_throttled_write_is_mapped_by_the_store_to_503(ingest_api: Api, store: Store) -> None:
    # The ingest reads the tenant's features (a Query) and settings (a GetItem, none stored),
    # then writes the event (a PutItem).
    with Stubber(store.client) as stubber:
        stubber.add_response("query", {"Items": [], "Count": 0, "ScannedCount": 0})
        stubber.add_response("get_item", {})
        stubber.add_client_error(
            "put_item",
            service_error_code="ProvisionedThroughputExceededException",
            service_message="Rate of requests exceeds the allowed throughput.",
            http_status_code=400,
        )

        reply = ingest_api.post("/v1/events", token_event("req-1", "input", "10"))

        stubber.assert_no_pending_responses()
    assert reply.status == 503
    assert reply.body["code"] == "storage_unavailable"
    assert "ProvisionedThroughputExceededException" in reply.body["message"]
    assert _stored_event_ids(store) == []


def test_throttled_feature_lookup_answers_503_before_anything_is_written(
    ingest_api: Api, store: Store
) -> None:
    with Stubber(store.client) as stubber:
        stubber.add_client_error(
            "query", service_error_code="ThrottlingException", http_status_code=400
        )

        reply = ingest_api.post("/v1/events/bulk", {"events": _events(3)})

    assert reply.status == 503
    assert reply.body["code"] == "storage_unavailable"
    assert _stored_event_ids(store) == []


def test_request_without_a_tenant_answers_401_and_stores_nothing(
    ingest_api: Api, store: Store
) -> None:
    reply = ingest_api.post("/v1/events/bulk", {"events": _events(1)}, tenant=None)

    assert reply.status == 401
    assert reply.body["code"] == "unauthorized"
    assert _stored_event_ids(store) == []
