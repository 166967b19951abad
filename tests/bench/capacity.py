"""Write and read units of the DynamoDB requests a client sends, worked out from the requests.

moto answers `ReturnConsumedCapacity` with made-up figures, so the benchmark attaches botocore
hooks to the store's client and prices every request itself, by the rules of the DynamoDB
developer guide ("DynamoDB item sizes and formats", "DynamoDB read and write operations"):

* Item size: the UTF-8 length of every attribute name plus its value. Strings count their UTF-8
  bytes, numbers 1 byte per two significant digits plus 1, booleans and nulls 1 byte, lists
  and maps 3 bytes plus their elements, each element 1 byte more.
* Writes: 1 unit per started KB of the larger of the item before and after the write. A write
  whose condition fails still costs the existing item's size, at least 1 unit. Each global
  secondary index that holds the item costs the same again for its index entry. Transactions
  cost twice.
* Reads: 1 unit per started 4 KB, for a GetItem the item, for a Query the sum of the items
  returned (at least 1 unit either way); eventually consistent reads cost half.

The item before an UpdateItem (or an unconditional put) is read through a second client that
is not metered, and so is the item after it: those reads are bookkeeping, not the product's.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CapacityMeter", "MeteredRequest", "Usage", "item_size"]

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
# A put under this condition succeeds only when no item was there: nothing to read beforehand.
_CREATE_ONLY = "attribute_not_exists(pk)"
_CONTEXT_KEY = "meterbill_bench"
_CONDITION_FAILURES = ("ConditionalCheckFailedException", "TransactionCanceledException")

Item = Mapping[str, Mapping[str, Any]]


def item_size(item: Item) -> int:
    """Bytes DynamoDB counts for an item in low-level form (`{"name": {"S": "..."}}`)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        return _number_size(str(inner))
    if kind == "B":
        return _binary_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(_number_size(n) for n in inner)
    if kind == "BS":
        return sum(_binary_size(b) for b in inner)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def _number_size(text: str) -> int:
    mantissa = text.lstrip("+-").lower().split("e")[0].replace(".", "")
    significant = mantissa.strip("0")
    return math.ceil(len(significant) / 2) + 1


def _binary_size(value: bytes | str) -> int:
    # On the wire binary travels as base64 text; DynamoDB counts the raw bytes.
    return len(value) if isinstance(value, bytes) else len(base64.b64decode(value))


def _write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def _strong_read_units(size: int) -> int:
    return max(1, math.ceil(size / READ_UNIT_BYTES))


@dataclass(frozen=True)
class _Index:
    name: str
    keys: tuple[str, ...]
    projection: str
    non_key_attributes: tuple[str, ...]


@dataclass(frozen=True)
class _Write:
    kind: str  # Put, Update, Delete or ConditionCheck
    table: str
    key: dict[str, Any]
    put: dict[str, Any] | None
    condition: str | None


@dataclass(frozen=True)
class MeteredRequest:
    """One request as DynamoDB would bill it."""

    phase: str
    operation: str
    table_write_units: float = 0
    index_write_units: float = 0
    # Read units this request would cost strongly consistent; `consistent` says what it asked.
    strong_read_units: float = 0
    consistent: bool = False
    condition_failed: bool = False

    @property
    def write_units(self) -> float:
        return self.table_write_units + self.index_write_units

    @property
    def read_units(self) -> float:
        """Read units as charged: half for an eventually consistent read."""
        return self.strong_read_units if self.consistent else self.strong_read_units / 2


@dataclass(frozen=True)
class Usage:
    """Totals over a set of metered requests."""

    requests: int
    write_units: float
    table_write_units: float
    index_write_units: float
    read_units: float
    eventual_read_units: float
    operations: dict[str, int] = field(default_factory=dict)


class CapacityMeter:
    """Prices every request one DynamoDB client sends, labelled with the current phase."""

    def __init__(self, client: Any, reader: Any) -> None:
        """`client` is the metered client; `reader` an unmetered one on the same endpoint."""
        self.requests: list[MeteredRequest] = []
        # Operations this meter cannot price, and requests DynamoDB rejected: both should stay
        # empty, and the benchmark says so when they do not.
        self.unmetered: list[str] = []
        self.errors: list[str] = []
        self._reader = reader
        self._phase = "unlabelled"
        self._keys: dict[str, tuple[str, ...]] = {}
        self._indexes: dict[str, list[_Index]] = {}
        client.meta.events.register("before-call.dynamodb", self._before, "bench-capacity-before")
        client.meta.events.register("after-call.dynamodb", self._after, "bench-capacity-after")

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        previous, self._phase = self._phase, name
        try:
            yield
        finally:
            self._phase = previous

    def reset(self) -> None:
        self.requests.clear()

    def usage(self, phase: str | None = None) -> Usage:
        chosen = [r for r in self.requests if phase is None or r.phase == phase]
        operations: dict[str, int] = {}
        for request in chosen:
            operations[request.operation] = operations.get(request.operation, 0) + 1
        return Usage(
            requests=len(chosen),
            write_units=sum(r.write_units for r in chosen),
            table_write_units=sum(r.table_write_units for r in chosen),
            index_write_units=sum(r.index_write_units for r in chosen),
            read_units=sum(r.read_units for r in chosen),
            eventual_read_units=sum(r.strong_read_units / 2 for r in chosen),
            operations=operations,
        )

    # --- hooks -------------------------------------------------------------------------------

    def _before(
        self, model: Any, params: Mapping[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        # `params` is the serialized request: its body is exactly what goes on the wire.
        request = json.loads(params["body"] or b"{}")
        before: list[dict[str, Any] | None] = []
        for write in self._written_items(model.name, request):
            skip = write.put is not None and write.condition == _CREATE_ONLY
            before.append(None if skip else self._read(write.table, write.key))
        context[_CONTEXT_KEY] = (request, before)

    def _after(
        self, model: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any
    ) -> None:
        request, before = context.pop(_CONTEXT_KEY)
        operation = model.name
        code = parsed.get("Error", {}).get("Code")
        if code is not None and code not in _CONDITION_FAILURES:
            # Rejected before any item was touched (validation, throttling): not billed.
            self.errors.append(f"{operation}: {code}")
        elif operation in ("GetItem", "Query"):
            self._record_read(operation, request, parsed)
        elif operation in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"):
            self._record_write(operation, request, before, failed=code is not None)
        else:
            self.unmetered.append(operation)

    # --- pricing -----------------------------------------------------------------------------

    def _record_read(self, operation: str, request: Mapping[str, Any], parsed: Any) -> None:
        if operation == "GetItem":
            item = parsed.get("Item")
            size = item_size(item) if item else 0
        else:
            size = sum(item_size(item) for item in parsed.get("Items", []))
        self.requests.append(
            MeteredRequest(
                phase=self._phase,
                operation=operation,
                strong_read_units=_strong_read_units(size),
                consistent=bool(request.get("ConsistentRead", False)),
            )
        )

    def _record_write(
        self,
        operation: str,
        request: Mapping[str, Any],
        before: list[dict[str, Any] | None],
        failed: bool,
    ) -> None:
        table_units = 0.0
        index_units = 0.0
        # Transactions write every item twice: prepare and commit.
        factor = 2 if operation == "TransactWriteItems" else 1
        writes = self._written_items(operation, request)
        for write, old in zip(writes, before, strict=True):
            if failed or write.kind == "ConditionCheck":
                # Nothing changes; the size of the item that is there is charged, at least 1.
                existing = old
                if write.put is not None and old is None:
                    existing = self._read(write.table, write.key)
                table_units += factor * _write_units(item_size(existing or {}))
                continue
            new = write.put if write.put is not None else self._read(write.table, write.key)
            sizes = [item_size(i) for i in (old, new) if i is not None]
            table_units += factor * _write_units(max(sizes, default=0))
            index_units += factor * self._index_units(write.table, old, new)
        self.requests.append(
            MeteredRequest(
                phase=self._phase,
                operation=operation,
                table_write_units=table_units,
                index_write_units=index_units,
                condition_failed=failed,
            )
        )

    def _index_units(self, table: str, old: Item | None, new: Item | None) -> int:
        units = 0
        for index in self._table_indexes(table):
            old_entry = _index_entry(index, old)
            new_entry = _index_entry(index, new)
            if old_entry is None and new_entry is None:
                continue
            same_keys = (
                old_entry is not None
                and new_entry is not None
                and all(old_entry[k] == new_entry[k] for k in index.keys)
            )
            if same_keys:
                if old_entry != new_entry:
                    assert old_entry is not None and new_entry is not None
                    units += _write_units(max(item_size(old_entry), item_size(new_entry)))
                continue
            # A new entry, a removed one, or a key change (a delete plus a put).
            for entry in (old_entry, new_entry):
                if entry is not None:
                    units += _write_units(item_size(entry))
        return units

    def _table_indexes(self, table: str) -> list[_Index]:
        self._describe(table)
        return self._indexes[table]

    def _table_keys(self, table: str) -> tuple[str, ...]:
        self._describe(table)
        return self._keys[table]

    def _describe(self, table: str) -> None:
        if table in self._keys:
            return
        description = self._reader.describe_table(TableName=table)["Table"]
        table_keys = tuple(k["AttributeName"] for k in description["KeySchema"])
        self._keys[table] = table_keys
        self._indexes[table] = [
            _Index(
                name=index["IndexName"],
                keys=table_keys + tuple(k["AttributeName"] for k in index["KeySchema"]),
                projection=index["Projection"]["ProjectionType"],
                non_key_attributes=tuple(index["Projection"].get("NonKeyAttributes", [])),
            )
            for index in description.get("GlobalSecondaryIndexes", [])
        ]

    def _written_items(self, operation: str, request: Mapping[str, Any]) -> list[_Write]:
        """Every item a write request touches, in request order."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            actions = [{operation.removesuffix("Item"): request}]
        elif operation == "TransactWriteItems":
            actions = request.get("TransactItems", [])
        else:
            return []
        writes = []
        for action in actions:
            ((kind, spec),) = action.items()
            table = spec["TableName"]
            put = spec.get("Item") if kind == "Put" else None
            key = spec.get("Key") or {name: (put or {})[name] for name in self._table_keys(table)}
            writes.append(_Write(kind, table, key, put, spec.get("ConditionExpression")))
        return writes

    def _read(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        response = self._reader.get_item(TableName=table, Key=key, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item


def _index_entry(index: _Index, item: Item | None) -> dict[str, Any] | None:
    """What the index holds for an item, or None when the item lacks an index key."""
    if item is None or any(k not in item for k in index.keys):
        return None
    if index.projection == "ALL":
        return dict(item)
    kept = set(index.keys)
    if index.projection == "INCLUDE":
        kept.update(index.non_key_attributes)
    return {name: value for name, value in item.items() if name in kept}
