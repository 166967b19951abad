"""The table's stream as Lambda's event source mapping delivers it to the aggregator.

`StreamReader` reads moto's stream from TRIM_HORIZON and hands out each record once, in the
shape Lambda gives a function: the creation time as whole epoch seconds, not a datetime.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3

from meterbill.local.lambda_events import stream_event

Record = dict[str, Any]
# Invokes the aggregator with a batch of records and returns its answer (see the `deliver` fixture).
Deliver = Callable[[list[Record]], dict[str, Any]]


class StreamReader:
    def __init__(self, table_name: str, filter_patterns: list[dict[str, Any]]) -> None:
        self._streams = boto3.client("dynamodbstreams")
        table = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]
        self.arn: str = table["LatestStreamArn"]
        self._filter_patterns = filter_patterns
        self._iterators: dict[str, str] = {}

    def new_records(self) -> list[Record]:
        """Every record written since the previous call, whatever its kind."""
        records: list[Record] = []
        shards = self._streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        for shard in shards:
            iterator = (
                self._iterators.get(shard["ShardId"])
                or self._streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            )
            while True:
                response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = response["NextShardIterator"]
                if not response["Records"]:
                    break
                records.extend(_as_delivered(record) for record in response["Records"])
            self._iterators[shard["ShardId"]] = iterator
        return records

    def new_event_records(self) -> list[Record]:
        """The new records the template's FilterCriteria lets through to the aggregator."""
        return [record for record in self.new_records() if self.passes_filter(record)]

    def passes_filter(self, record: Record) -> bool:
        return any(_matches(record, pattern) for pattern in self._filter_patterns)

    def batch(self, records: list[Record]) -> dict[str, Any]:
        return stream_event(records, self.arn)


def sequence_number(record: Record) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def _as_delivered(record: Record) -> Record:
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**record, "dynamodb": change}


def _matches(value: Any, pattern: Any) -> bool:
    # Event filtering with exact-value lists only, which is all the template uses.
    if isinstance(pattern, list):
        return value in pattern
    return isinstance(value, dict) and all(
        key in value and _matches(value[key], part) for key, part in pattern.items()
    )
