"""The benchmark's capacity meter prices requests by the DynamoDB developer guide's rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.bench.capacity import CapacityMeter, item_size

TABLE = "meter-test"


def test_item_size_counts_names_and_values_by_type() -> None:
    item: dict[str, dict[str, Any]] = {
        "pk": {"S": "abc"},  # 2 + 3
        "n": {"N": "1200"},  # 1 + 1 (two significant digits) + 1
        "big": {"N": "-123.45"},  # 3 + 3 (five significant digits) + 1
        "ok": {"BOOL": True},  # 2 + 1
        "é": {"S": "é"},  # 2 + 2: UTF-8 bytes
        "m": {"M": {"a": {"S": "x"}}},  # 1 + 3 + (1 + 1 + 1 for the element)
        "l": {"L": [{"N": "5"}, {"NULL": True}]},  # 1 + 3 + (2 + 1) + (1 + 1)
    }

    assert item_size(item) == 5 + 3 + 7 + 3 + 4 + 7 + 9


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in ("pk", "sk", "gsi1pk", "gsi1sk")
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "gsi1",
                    "KeySchema": [
                        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )
        yield dynamodb


@pytest.fixture
def meter(client: Any) -> CapacityMeter:
    reader = boto3.client("dynamodb", region_name="us-east-1")
    return CapacityMeter(client, reader)


def _item(pk: str, padding: int, indexed: bool) -> dict[str, Any]:
    item = {"pk": {"S": pk}, "sk": {"S": "x"}, "data": {"S": "." * padding}}
    if indexed:
        item |= {"gsi1pk": {"S": "g"}, "gsi1sk": {"S": "1"}}
    return item


def test_a_put_costs_a_unit_per_started_kb_and_again_for_its_index_entry(
    client: Any, meter: CapacityMeter
) -> None:
    client.put_item(TableName=TABLE, Item=_item("a", 1500, indexed=True))
    client.put_item(TableName=TABLE, Item=_item("b", 100, indexed=False))

    first, second = meter.requests
    assert (first.table_write_units, first.index_write_units) == (2, 2)
    assert (second.table_write_units, second.index_write_units) == (1, 0)


def test_a_failed_condition_costs_the_existing_items_size(
    client: Any, meter: CapacityMeter
) -> None:
    client.put_item(TableName=TABLE, Item=_item("a", 2500, indexed=True))
    meter.reset()

    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(
            TableName=TABLE,
            Item=_item("a", 10, indexed=True),
            ConditionExpression="attribute_not_exists(pk)",
        )

    (failed,) = meter.requests
    assert failed.condition_failed
    assert (failed.table_write_units, failed.index_write_units) == (3, 0)


def test_an_update_costs_the_larger_of_the_item_before_and_after(
    client: Any, meter: CapacityMeter
) -> None:
    client.put_item(TableName=TABLE, Item=_item("a", 1500, indexed=False))
    meter.reset()

    client.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "a"}, "sk": {"S": "x"}},
        UpdateExpression="SET #d = :small",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":small": {"S": "."}},
    )

    (update,) = meter.requests
    assert update.write_units == 2


def test_reads_cost_a_unit_per_started_4_kb_and_half_when_eventually_consistent(
    client: Any, meter: CapacityMeter
) -> None:
    for pk in ("a", "b", "c"):
        client.put_item(TableName=TABLE, Item={**_item(pk, 1500, False), "sk": {"S": "s"}})
    meter.reset()

    client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}, "sk": {"S": "s"}}, ConsistentRead=True)
    client.get_item(TableName=TABLE, Key={"pk": {"S": "zz"}, "sk": {"S": "s"}})
    client.scan(TableName=TABLE)

    consistent, missing = meter.requests
    assert (consistent.read_units, missing.read_units) == (1, 0.5)
    assert meter.unmetered == ["Scan"]
