"""The quick form of `make bench`: the counted figures, asserted exactly.

Write units, requests and read units are worked out from the requests the handlers send (see
`capacity.py`), so they do not depend on the machine: a change that makes an event cost more
fails here. The values are what the design costs today; when the design changes on purpose,
change them together with docs/capacity.md. Timed figures are only printed (`pytest -s`).
"""

from __future__ import annotations

import pytest

from tests.bench.counts import WriteCost, measure_invoice_reads, measure_write_costs
from tests.bench.cpu import measure_cpu


@pytest.fixture(scope="module")
def bulk_of_100() -> WriteCost:
    """100 events in one bulk, each matching 3 features, all for 1 customer, warmed up."""
    (cost,) = measure_write_costs(features=3, customers=1, bulk_sizes=(100,))
    return cost


def test_a_100_event_bulk_costs_2_07_write_units_per_event(bulk_of_100: WriteCost) -> None:
    # Ingest: each event item is under 1 KB and carries gsi1pk/gsi1sk, so 1 unit for the table
    # and 1 for its gsi1 entry (100 + 100), and 1 unit for the tenant's rate-limit window
    # (one UpdateItem per request).
    assert bulk_of_100.ingest.table_write_units == 101
    assert bulk_of_100.ingest.index_write_units == 100
    # Aggregator: one UpdateItem per counter per stream batch. 3 features -> 3 period counters
    # and 3 counters of the 15-minute window the events fall in, each under 1 KB even with all
    # 16 lane watermarks (about 954 bytes).
    assert bulk_of_100.aggregator.write_units == 6
    assert bulk_of_100.write_units_per_event == pytest.approx(2.07)


def test_a_100_event_bulk_sends_1_03_ingest_requests_per_event(bulk_of_100: WriteCost) -> None:
    # One conditional PutItem per event, one Query of the tenant's features, one GetItem of its
    # settings (the backdating limit), one UpdateItem of the rate-limit window.
    assert bulk_of_100.ingest.operations == {
        "PutItem": 100,
        "Query": 1,
        "GetItem": 1,
        "UpdateItem": 1,
    }
    assert bulk_of_100.ingest_requests_per_event == pytest.approx(1.03)
    # The aggregator: the customer's subscriptions (plan and features are cached), 6 counters.
    assert bulk_of_100.aggregator.operations == {"Query": 1, "UpdateItem": 6}


def test_proposed_invoice_reads_do_not_grow_with_days_or_events() -> None:
    reads = measure_invoice_reads(features=3, shapes=((1, 100), (31, 100), (1, 1000)))

    # Strongly consistent, as coded, 1 unit each: GetItem of the subscription, the plan, each of
    # the 3 features and the tenant's settings; one Query of the period's 3 counters (under
    # 4 KB together), one Query for late usage of invoiced periods.
    assert [r.usage.read_units for r in reads] == [8, 8, 8]
    assert [r.usage.operations for r in reads] == [{"GetItem": 6, "Query": 2}] * 3


def test_cpu_per_event_is_reported() -> None:
    cpu = measure_cpu(rounds=1, round_seconds=0.01)

    print(
        f"\nCPU per event: floor {cpu.floor * 1e6:.1f} us, "
        f"ingest {cpu.ingest * 1e6:.1f} us ({cpu.ingest / cpu.floor:.1f}x, "
        f"{cpu.write_concurrency} writers), "
        f"aggregator {cpu.aggregator * 1e6:.1f} us ({cpu.aggregator / cpu.floor:.1f}x)"
    )
    assert cpu.floor > 0
