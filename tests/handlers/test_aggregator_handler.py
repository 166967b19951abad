"""The aggregator function: stream batches of stored events become usage counters, each record
counted once however often Lambda delivers it."""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from meterbill.storage import Store
from tests.handlers.api import Api
from tests.handlers.scenario import (
    O1_CUSTOMER,
    Subscribed,
    send_events,
    subscribe_o1,
    token_event,
)
from tests.handlers.stream import Deliver, StreamReader, sequence_number

NO_FAILURES: dict[str, Any] = {"batchItemFailures": []}


def _usage(
    store: Store, o1: Subscribed, period_start: datetime | None = None
) -> dict[str, Decimal]:
    """A period's counters (by default the current one) by prompt type; absent: never written."""
    start = period_start or o1.period_start
    quantities = store.period_quantities("tenant-a", o1.subscription_id, start)
    by_feature = {feature_id: name for name, feature_id in o1.feature_ids.items()}
    return {by_feature.get(feature_id, feature_id): q for feature_id, q in quantities.items()}


def _rfc3339(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ten_events() -> list[dict[str, Any]]:
    # Powers of ten: any sum tells exactly which events were counted, and how often.
    prompt_types = ["input", "output"]
    return [
        token_event(f"evt-{index}", prompt_types[index % 2], str(10**index)) for index in range(10)
    ]


def _expected(events: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for event in events:
        properties = event["properties"]
        totals[properties["prompt_type"]] += Decimal(properties["tokens"])
    return dict(totals)


def test_usage_counter_holds_the_exact_sum_of_the_ingested_tokens(
    o1: Subscribed, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    events = [
        token_event("in-1", "input", "2000000"),
        token_event("in-2", "input", "2000000"),
        token_event("in-3", "input", "1000001"),
        token_event("out-1", "output", "1500000"),
        token_event("out-2", "output", "0.5"),
        token_event("cached-1", "cached_input", "1000000"),
    ]
    send_events(ingest_api, events)
    records = stream.new_event_records()

    answer = deliver(records)

    assert answer == NO_FAILURES
    assert len(records) == 6
    assert _usage(store, o1) == {
        "input": Decimal("5000001"),
        "output": Decimal("1500000.5"),
        "cached_input": Decimal("1000000"),
    }


def test_same_batch_delivered_twice_counts_once(
    o1: Subscribed, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    events = _ten_events()
    send_events(ingest_api, events)
    records = stream.new_event_records()
    deliver(records)

    again = deliver(records)

    assert again == NO_FAILURES
    assert _usage(store, o1) == _expected(events)


def test_overlapping_deliveries_count_every_record_once(
    o1: Subscribed, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    events = _ten_events()
    send_events(ingest_api, events)
    records = stream.new_event_records()
    assert len(records) == 10

    first = deliver(records[0:6])
    second = deliver(records[3:10])

    assert first == second == NO_FAILURES
    assert _usage(store, o1) == _expected(events)


def test_batches_delivered_in_order_add_up(
    o1: Subscribed, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    events = _ten_events()
    send_events(ingest_api, events[:4])
    deliver(stream.new_event_records())
    send_events(ingest_api, events[4:])

    deliver(stream.new_event_records())

    assert _usage(store, o1) == _expected(events)


def test_failed_counter_is_reported_from_its_lowest_record_and_redelivery_counts_once(
    o1: Subscribed,
    ingest_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = [
        token_event("evt-0", "input", "1"),
        token_event("evt-1", "input", "10"),
        token_event("evt-2", "output", "100"),
        token_event("evt-3", "input", "1000"),
        token_event("evt-4", "output", "10000"),
        token_event("evt-5", "input", "100000"),
    ]
    send_events(ingest_api, events)
    records = stream.new_event_records()
    by_id = {record["dynamodb"]["NewImage"]["event_id"]["S"]: record for record in records}
    output_counter = o1.feature_ids["output"]
    real_update_item = store.client.update_item

    def throttle_output_counter(**request: Any) -> Any:
        if request["Key"]["sk"]["S"].endswith(output_counter):
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "UpdateItem",
            )
        return real_update_item(**request)

    monkeypatch.setattr(store.client, "update_item", throttle_output_counter)

    answer = deliver(records)

    lowest_output = min((sequence_number(by_id["evt-2"]), sequence_number(by_id["evt-4"])), key=int)
    assert answer == {"batchItemFailures": [{"itemIdentifier": lowest_output}]}
    assert _usage(store, o1) == {"input": Decimal("101011")}

    # Lambda retries from the reported record: later records of the counter that succeeded
    # arrive again and must not count twice.
    monkeypatch.setattr(store.client, "update_item", real_update_item)
    retry_from = [sequence_number(record) for record in records].index(lowest_output)

    retried = deliver(records[retry_from:])

    assert retried == NO_FAILURES
    assert _usage(store, o1) == {"input": Decimal("101011"), "output": Decimal("10100")}


def test_events_before_the_subscription_start_are_not_counted(
    catalog_api: Api, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    o1 = subscribe_o1(catalog_api, start_date=_rfc3339(start))
    events = [
        token_event("early", "input", "1", timestamp=_rfc3339(start - timedelta(microseconds=1))),
        token_event("at-start", "input", "10", timestamp=_rfc3339(start)),
        token_event("later", "input", "100", timestamp=_rfc3339(start + timedelta(days=5))),
    ]
    send_events(ingest_api, events)

    deliver(stream.new_event_records())

    assert _usage(store, o1, start) == {"input": Decimal("110")}


def test_events_in_another_period_count_towards_that_period(
    catalog_api: Api, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    # Monthly periods from the first of last month: the boundary is this month's first, at
    # most 31 days ago, so both events are inside the backdating limit.
    this_month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    o1 = subscribe_o1(catalog_api, start_date=_rfc3339(last_month))
    events = [
        token_event("last", "input", "1", timestamp=_rfc3339(this_month - timedelta(seconds=1))),
        token_event("this", "input", "10", timestamp=_rfc3339(this_month)),
    ]
    send_events(ingest_api, events)

    deliver(stream.new_event_records())

    assert _usage(store, o1, last_month) == {"input": Decimal("1")}
    assert _usage(store, o1, this_month) == {"input": Decimal("10")}


def test_events_of_another_customer_or_tenant_are_not_counted(
    o1: Subscribed,
    catalog_api: Api,
    ingest_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    store: Store,
) -> None:
    other = catalog_api.post("/v1/customers", {"external_id": "globex", "name": "Globex"})
    assert other.status == 201
    send_events(
        ingest_api,
        [
            token_event("mine", "input", "1"),
            token_event("globex", "input", "10", customer="globex"),
            token_event("stranger", "input", "100", customer="nobody-subscribed"),
        ],
    )
    # Another tenant, same customer name: its events live apart.
    other_tenant = ingest_api.post(
        "/v1/events", token_event("elsewhere", "input", "1000"), tenant="tenant-b"
    )
    assert other_tenant.status == 202

    answer = deliver(stream.new_event_records())

    assert answer == NO_FAILURES
    assert _usage(store, o1) == {"input": Decimal("1")}


def test_events_matching_no_priced_feature_are_not_counted(
    o1: Subscribed,
    catalog_api: Api,
    ingest_api: Api,
    stream: StreamReader,
    deliver: Deliver,
    store: Store,
) -> None:
    unpriced = catalog_api.post(
        "/v1/features",
        {
            "name": "Reasoning tokens",
            "lookup_key": "o1-reasoning-tokens",
            "event_name": "llm.tokens",
            "aggregation": {"type": "SUM", "field": "tokens"},
            "filters": {"prompt_type": ["reasoning"]},
        },
    )
    assert unpriced.status == 201
    send_events(
        ingest_api,
        [
            token_event("priced", "input", "1"),
            token_event("unpriced", "reasoning", "10"),
            token_event("other-model", "input", "100", model="GPT-4o"),
            {
                "event_id": "other-name",
                "event_name": "llm.call",
                "external_customer_id": O1_CUSTOMER,
            },
        ],
    )

    deliver(stream.new_event_records())

    assert _usage(store, o1) == {"input": Decimal("1")}


def test_records_that_are_not_new_events_are_ignored(
    o1: Subscribed, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    send_events(ingest_api, [token_event("evt-0", "input", "7")])
    deliver(stream.new_event_records())
    send_events(ingest_api, [token_event("evt-1", "input", "10")])
    [new_event] = stream.new_event_records()
    modified_event = copy.deepcopy(new_event)
    modified_event["eventName"] = "MODIFY"
    removed_event = copy.deepcopy(new_event)
    removed_event["eventName"] = "REMOVE"
    del removed_event["dynamodb"]["NewImage"]
    # Everything but events: the API key, catalog items, the first counter write (an INSERT).
    everything = StreamReader(store.table_name, []).new_records()
    others = [record for record in everything if not stream.passes_filter(record)]
    assert {"feature", "plan", "customer", "subscription"} <= {
        r["dynamodb"]["NewImage"].get("type", {}).get("S") for r in others
    }

    answer = deliver([*others, modified_event, removed_event])

    assert answer == NO_FAILURES
    assert _usage(store, o1) == {"input": Decimal("7")}


def test_counter_updates_streamed_back_are_not_counted(
    o1: Subscribed, ingest_api: Api, stream: StreamReader, deliver: Deliver, store: Store
) -> None:
    send_events(ingest_api, [token_event("evt-0", "input", "7")])
    deliver(stream.new_event_records())
    send_events(ingest_api, [token_event("evt-1", "input", "10")])
    deliver(stream.new_event_records())  # the counter exists now: this update is a MODIFY
    counter_records = [
        record
        for record in StreamReader(store.table_name, []).new_records()
        if record["dynamodb"]["Keys"]["sk"]["S"].startswith("USAGE#")
    ]
    assert {r["eventName"] for r in counter_records} == {"INSERT", "MODIFY"}

    answer = deliver(counter_records)

    assert answer == NO_FAILURES
    assert _usage(store, o1) == {"input": Decimal("17")}


def test_stream_filter_of_the_template_passes_only_new_events(
    o1: Subscribed, ingest_api: Api, stream: StreamReader
) -> None:
    send_events(ingest_api, [token_event("evt-0", "input", "7")])

    every = stream.new_records()
    passed = [record for record in every if stream.passes_filter(record)]

    assert [r["dynamodb"]["NewImage"]["event_id"]["S"] for r in passed] == ["evt-0"]
    assert len(every) > len(passed)
