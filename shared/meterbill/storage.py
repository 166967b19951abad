"""The single DynamoDB table behind meterbill, and the only module that talks to it.

Every key starts with the tenant (`T#<tenant>#...`) except API keys, which are what resolves a
tenant in the first place (each also has a listing item under its tenant). AWS errors become
domain errors here: a failed condition becomes `AlreadyExists` (or a duplicate, for events),
anything else becomes `StorageUnavailable`.

Item layout (pk / sk):

    API key        KEY#<key id>                       KEY
      its listing  T#<t>#KEYS                         KEY#<key id>
    feature        T#<t>#FEATURES                     FEATURE#<feature id>
    plan           T#<t>#PLANS                        PLAN#<plan id>
    customer       T#<t>#CUSTOMER#<customer id>       CUSTOMER
    rate window    T#<t>#RATE#<epoch second>          RATE   (expires through TTL)
    subscription   T#<t>#SUB#<subscription id>        SUB      gsi2: DUE#<n>  <due at>
      its link     T#<t>#CUSTOMER#<customer id>       SUB#<subscription id>
      its usage    T#<t>#SUB#<subscription id>        USAGE#<period start>#<feature id>
      settled      T#<t>#SUB#<subscription id>        SETTLED#<period start>
    settings       T#<t>#SETTINGS                     SETTINGS
    invoice        T#<t>#INVOICE#<invoice id>         INVOICE
      listings     T#<t>#INVOICES | T#<t>#SUB#<id> | T#<t>#CUSTOMER#<id>   INVOICE#<number>
    numbering      T#<t>#INVOICE_SEQ                  SEQ
    event          T#<t>#EVENTS#<lane>                EVENT#<event id>
      by customer  gsi1: T#<t>#CUSTOMER_EVENTS#<external id>#<n>   <timestamp>#<event id>

Events spread over `EVENT_LANES` partition keys per tenant and the customer index over
`CUSTOMER_EVENT_SHARDS` keys per customer, so neither a tenant nor a big customer is capped by
one partition (about 1,000 writes/s each).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, TypeAdapter

from meterbill.counters import CounterState
from meterbill.errors import AlreadyExists, Conflict, StorageUnavailable, ValidationFailed
from meterbill.models import (
    Customer,
    Feature,
    Invoice,
    Plan,
    Settlement,
    StoredEvent,
    Subscription,
    TenantSettings,
)
from meterbill.values import plain

__all__ = [
    "CUSTOMER_EVENT_SHARDS",
    "EVENT_LANES",
    "ApiKeyRecord",
    "CounterDelta",
    "CounterKey",
    "CounterState",
    "EventPage",
    "Store",
    "event_lane",
]

EVENT_LANES = 16
CUSTOMER_EVENT_SHARDS = 4
# DynamoDB Streams sequence numbers have 21 to 40 digits; padding makes text order numeric order.
_SEQUENCE_WIDTH = 40
_COUNTER_UPDATE_ATTEMPTS = 5


class _PlainNumberSerializer(TypeSerializer):  # type: ignore[misc]
    """Writes numbers without exponent notation: moto's ADD cannot parse `1E-7`."""

    def _serialize_n(self, value: Any) -> str:
        number: str = super()._serialize_n(value)
        return format(Decimal(number), "f")


_serializer = _PlainNumberSerializer()
_deserializer = TypeDeserializer()


def event_lane(event_id: str) -> str:
    """The events partition an event id belongs to: stable, so a duplicate lands on its twin."""
    digest = hashlib.sha256(event_id.encode()).digest()
    return f"{int.from_bytes(digest[:4], 'big') % EVENT_LANES:02d}"


def _customer_event_shard(event_id: str) -> int:
    digest = hashlib.sha256(b"customer-index\x00" + event_id.encode()).digest()
    return digest[0] % CUSTOMER_EVENT_SHARDS


DUE_SHARDS = 16


def _due_keys(tenant_id: str, subscription_id: str, due_at: datetime) -> dict[str, str]:
    digest = hashlib.sha256(f"{tenant_id}\x00{subscription_id}".encode()).digest()
    return {
        "gsi2pk": f"DUE#{digest[0] % DUE_SHARDS}",
        "gsi2sk": f"{_instant_key(due_at)}#{tenant_id}#{subscription_id}",
    }


_INSTANT_ADAPTER: TypeAdapter[datetime] = TypeAdapter(datetime)


def _json_instant(instant: datetime) -> str:
    """An instant as pydantic's JSON mode writes it inside stored records."""
    return str(_INSTANT_ADAPTER.dump_python(instant, mode="json"))


def _instant_key(instant: datetime) -> str:
    """Fixed-width UTC text, so that sort keys order like time."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    tenant_id: str
    name: str
    prefix: str
    secret_hash: str
    created_at: str
    last_used_day: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True)
class EventPage:
    events: list[StoredEvent]
    next_cursor: str | None


@dataclass(frozen=True)
class CounterKey:
    """One usage counter: a subscription's period, or a customer's time window (`window` Q for
    15-minute buckets, H and D for local hours and days of distinct counts)."""

    tenant_id: str
    feature_id: str
    start: datetime
    end: datetime
    subscription_id: str | None = None
    customer_id: str | None = None
    window: str | None = None

    @property
    def pk(self) -> str:
        if self.window is None:
            return f"T#{self.tenant_id}#SUB#{self.subscription_id}"
        return f"T#{self.tenant_id}#WINDOWS#{self.customer_id}#{self.feature_id}"

    @property
    def sk(self) -> str:
        if self.window is None:
            return f"USAGE#{_instant_key(self.start)}#{self.feature_id}"
        return f"{self.window}#{_instant_key(self.start)}"

    def marker_sk(self, value_digest: str) -> str:
        return f"UNIQUE#{self.sk}#{value_digest}"


@dataclass
class CounterDelta:
    """What one stream batch adds to one attribute of a usage counter, by events lane.

    `contributions[lane]` lists (sequence number, amount) for every record of that lane. A lane
    watermark on the counter item remembers the highest sequence number already added, so a
    redelivered record is recognised and skipped instead of counted twice.
    """

    key: CounterKey
    contributions: dict[str, list[tuple[str, Decimal]]]
    attribute: str = "quantity"


class Store:
    """Typed reads and writes on the meterbill table."""

    def __init__(self, table_name: str, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        # Created on first use, so that tests and the local runtime can start moto first.
        if self._client is None:
            config = Config(retries={"mode": "standard", "max_attempts": 3})
            self._client = boto3.client("dynamodb", config=config)
        return self._client

    # --- API keys --------------------------------------------------------------------------

    def put_api_key(self, record: ApiKeyRecord) -> None:
        # The key item first: a crash before the listing item leaves a working key that
        # `keys list` does not show, never a listed key that does not work.
        fields = {k: v for k, v in vars(record).items() if v is not None}
        self._put(
            {"pk": f"KEY#{record.key_id}", "sk": "KEY", "type": "api_key", **fields},
            condition="attribute_not_exists(pk)",
            exists=lambda: "this API key already exists",
        )
        listing = {k: v for k, v in fields.items() if k != "secret_hash"}
        self._put(
            {"pk": f"T#{record.tenant_id}#KEYS", "sk": f"KEY#{record.key_id}", **listing},
            condition="attribute_not_exists(pk)",
            exists=lambda: "this API key already exists",
        )

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        item = self._get(f"KEY#{key_id}", "KEY")
        return None if item is None else _key_record(item)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        items = self._query_all(f"T#{tenant_id}#KEYS", "KEY#")
        return [_key_record({**item, "secret_hash": ""}) for item in items]

    def mark_api_key(self, record: ApiKeyRecord, attribute: str, value: str) -> None:
        """Set `last_used_day` or `revoked_at` on a key and on its listing: a repeatable SET."""
        for pk, sk in (
            (f"KEY#{record.key_id}", "KEY"),
            (f"T#{record.tenant_id}#KEYS", f"KEY#{record.key_id}"),
        ):
            self._call(
                "update_item",
                TableName=self.table_name,
                Key=_serialize({"pk": pk, "sk": sk}),
                UpdateExpression="SET #attribute = :value",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#attribute": attribute},
                ExpressionAttributeValues=_serialize({":value": value}),
            )

    # --- catalog ---------------------------------------------------------------------------

    def create_feature(self, tenant_id: str, feature: Feature) -> None:
        self._put_record(
            f"T#{tenant_id}#FEATURES",
            f"FEATURE#{feature.id}",
            feature,
            f"a feature with lookup_key {feature.lookup_key!r} already exists",
        )

    def get_feature(self, tenant_id: str, feature_id: str) -> Feature | None:
        item = self._get(f"T#{tenant_id}#FEATURES", f"FEATURE#{feature_id}")
        return None if item is None else Feature.model_validate(item["record"])

    def list_features(self, tenant_id: str) -> list[Feature]:
        items = self._query_all(f"T#{tenant_id}#FEATURES", "FEATURE#")
        return [Feature.model_validate(item["record"]) for item in items]

    def create_plan(self, tenant_id: str, plan: Plan) -> None:
        self._put_record(
            f"T#{tenant_id}#PLANS",
            f"PLAN#{plan.id}",
            plan,
            f"a plan with lookup_key {plan.lookup_key!r} already exists",
        )

    def get_plan(self, tenant_id: str, plan_id: str) -> Plan | None:
        item = self._get(f"T#{tenant_id}#PLANS", f"PLAN#{plan_id}")
        return None if item is None else Plan.model_validate(item["record"])

    def create_customer(self, tenant_id: str, customer: Customer) -> None:
        self._put_record(
            f"T#{tenant_id}#CUSTOMER#{customer.id}",
            "CUSTOMER",
            customer,
            f"a customer with external_id {customer.external_id!r} already exists",
        )

    def get_customer(self, tenant_id: str, customer_id: str) -> Customer | None:
        item = self._get(f"T#{tenant_id}#CUSTOMER#{customer_id}", "CUSTOMER")
        return None if item is None else Customer.model_validate(item["record"])

    def create_subscription(
        self, tenant_id: str, subscription: Subscription, due_at: datetime
    ) -> None:
        # The link beside the customer is written first: it is what the aggregator follows, so
        # a crash between the two writes can leave usage counted for an unlisted subscription,
        # never a listed subscription whose usage was not counted.
        self._put_record(
            f"T#{tenant_id}#CUSTOMER#{subscription.customer_id}",
            f"SUB#{subscription.id}",
            subscription,
            "subscription id collision",
        )
        self._put_record(
            f"T#{tenant_id}#SUB#{subscription.id}",
            "SUB",
            subscription,
            "subscription id collision",
            extra=_due_keys(tenant_id, subscription.id, due_at),
        )

    def replace_subscription(
        self,
        tenant_id: str,
        updated: Subscription,
        expected_next_close: datetime | None,
        due_at: datetime | None,
    ) -> bool:
        """Write a subscription's new state if nobody moved it since (its next period to close
        is still `expected_next_close`). False when the condition failed: someone else did it.
        The due index attributes follow `due_at`; None takes the subscription out of it."""
        item: dict[str, Any] = {
            "pk": f"T#{tenant_id}#SUB#{updated.id}",
            "sk": "SUB",
            "type": "subscription",
            "record": updated.model_dump(mode="json"),
        }
        if due_at is not None:
            item.update(_due_keys(tenant_id, updated.id, due_at))
        expected = None if expected_next_close is None else _json_instant(expected_next_close)
        condition = (
            "#record.#next = :expected" if expected else "attribute_type(#record.#next, :null)"
        )
        refused = self._conditional(
            "put_item",
            TableName=self.table_name,
            Item=_serialize(item),
            ConditionExpression=condition,
            ExpressionAttributeNames={"#record": "record", "#next": "next_close_start"},
            ExpressionAttributeValues=_serialize(
                {":expected": expected} if expected else {":null": "NULL"}
            ),
        )
        if refused is not None:
            return False
        # The aggregator reads the link beside the customer: keep its copy in step.
        self._call(
            "put_item",
            TableName=self.table_name,
            Item=_serialize(
                {
                    "pk": f"T#{tenant_id}#CUSTOMER#{updated.customer_id}",
                    "sk": f"SUB#{updated.id}",
                    "type": "subscription",
                    "record": updated.model_dump(mode="json"),
                }
            ),
        )
        return True

    def due_subscriptions(self, shard: int, due_by: datetime) -> Iterator[tuple[str, str]]:
        """(tenant, subscription id) of every subscription in one index shard due by `due_by`."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": "gsi2",
            "KeyConditionExpression": "gsi2pk = :shard AND gsi2sk <= :due",
            "ExpressionAttributeValues": _serialize(
                {":shard": f"DUE#{shard}", ":due": f"{_instant_key(due_by)}#~"}
            ),
        }
        while True:
            response = self._call("query", **request)
            for raw in response.get("Items", []):
                item = _deserialize(raw)
                _, tenant_id, _, subscription_id = item["pk"].split("#", 3)
                yield tenant_id, subscription_id
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    # --- settings --------------------------------------------------------------------------

    def get_settings(self, tenant_id: str) -> TenantSettings:
        item = self._get(f"T#{tenant_id}#SETTINGS", "SETTINGS")
        return TenantSettings() if item is None else TenantSettings.model_validate(item["record"])

    def put_settings(self, tenant_id: str, settings: TenantSettings) -> None:
        self._call(
            "put_item",
            TableName=self.table_name,
            Item=_serialize(
                {
                    "pk": f"T#{tenant_id}#SETTINGS",
                    "sk": "SETTINGS",
                    "type": "settings",
                    "record": settings.model_dump(mode="json"),
                }
            ),
        )

    # --- invoices --------------------------------------------------------------------------

    def claim_invoice(self, tenant_id: str, invoice: Invoice) -> Invoice:
        """Store a draft invoice unless one with its id exists; return the stored one.

        The id is derived from the subscription and period, so two closes of the same period
        meet here and carry on with the same lines."""
        try:
            self._put_record(f"T#{tenant_id}#INVOICE#{invoice.id}", "INVOICE", invoice, "exists")
        except AlreadyExists:
            stored = self.get_invoice(tenant_id, invoice.id)
            assert stored is not None
            return stored
        return invoice

    def get_invoice(self, tenant_id: str, invoice_id: str) -> Invoice | None:
        item = self._get(f"T#{tenant_id}#INVOICE#{invoice_id}", "INVOICE")
        return None if item is None else Invoice.model_validate(item["record"])

    def save_invoice(self, tenant_id: str, invoice: Invoice, listed: bool) -> None:
        """Overwrite an invoice (draft -> finalized -> void) and, once numbered, its listings."""
        record = invoice.model_dump(mode="json")
        self._call(
            "put_item",
            TableName=self.table_name,
            Item=_serialize(
                {
                    "pk": f"T#{tenant_id}#INVOICE#{invoice.id}",
                    "sk": "INVOICE",
                    "type": "invoice",
                    "record": record,
                }
            ),
        )
        if not listed or invoice.number is None:
            return
        summary = {
            "invoice_id": invoice.id,
            "number": invoice.number,
            "status": invoice.status.value,
            "subscription_id": invoice.subscription_id,
            "customer_id": invoice.customer_id,
        }
        for pk in (
            f"T#{tenant_id}#INVOICES",
            f"T#{tenant_id}#SUB#{invoice.subscription_id}",
            f"T#{tenant_id}#CUSTOMER#{invoice.customer_id}",
        ):
            self._call(
                "put_item",
                TableName=self.table_name,
                Item=_serialize(
                    {
                        "pk": pk,
                        "sk": f"INVOICE#{invoice.number}",
                        "type": "invoice_listing",
                        **summary,
                    }
                ),
            )

    def list_invoices(
        self, tenant_id: str, scope: str, status: str | None, limit: int, after: str | None
    ) -> tuple[list[str], str | None]:
        """Invoice ids under a scope (`INVOICES`, `SUB#<id>` or `CUSTOMER#<id>`), by number."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": _serialize(
                {
                    ":pk": f"T#{tenant_id}#{scope}",
                    # Numbers are fixed-width, so "after N" is everything above "N~".
                    ":low": f"INVOICE#{after}~" if after else "INVOICE#",
                    ":high": "INVOICE#~",
                }
            ),
            "ConsistentRead": True,
        }
        ids: list[str] = []
        numbers: list[str] = []
        # One more than a page: whether another page exists is then known, not guessed.
        while len(ids) <= limit:
            response = self._call("query", **request)
            for raw in response.get("Items", []):
                item = _deserialize(raw)
                if status is None or item["status"] == status:
                    ids.append(item["invoice_id"])
                    numbers.append(item["number"])
                    if len(ids) > limit:
                        break
            if "LastEvaluatedKey" not in response or len(ids) > limit:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        more = len(ids) > limit
        return ids[:limit], (numbers[limit - 1] if more else None)

    def invoice_sequence(self, tenant_id: str) -> dict[str, Any]:
        item = self._get(f"T#{tenant_id}#INVOICE_SEQ", "SEQ")
        return item or {}

    def reserve_invoice_number(self, tenant_id: str, previous: int, invoice_id: str) -> bool:
        """Take number previous + 1 for an invoice, if nothing is pending and nobody took it."""
        key = {"pk": f"T#{tenant_id}#INVOICE_SEQ", "sk": "SEQ"}
        if previous == 0:
            condition = "attribute_not_exists(pk)"
            values = {":number": 1, ":invoice": invoice_id}
        else:
            condition = "last_number = :previous AND attribute_not_exists(pending)"
            values = {":number": previous + 1, ":invoice": invoice_id, ":previous": previous}
        refused = self._conditional(
            "update_item",
            TableName=self.table_name,
            Key=_serialize(key),
            UpdateExpression="SET last_number = :number, pending = :invoice",
            ConditionExpression=condition,
            ExpressionAttributeValues=_serialize(values),
        )
        return refused is None

    def release_invoice_number(self, tenant_id: str, invoice_id: str) -> None:
        """Mark the pending number as used by its invoice; a no-op if someone already did."""
        self._conditional(
            "update_item",
            TableName=self.table_name,
            Key=_serialize({"pk": f"T#{tenant_id}#INVOICE_SEQ", "sk": "SEQ"}),
            UpdateExpression="REMOVE pending",
            ConditionExpression="pending = :invoice",
            ExpressionAttributeValues=_serialize({":invoice": invoice_id}),
        )

    def settled_periods(self, tenant_id: str, subscription_id: str) -> list[tuple[Settlement, str]]:
        """What finalized invoices billed per period of a subscription, with who billed it last."""
        items = self._query_all(f"T#{tenant_id}#SUB#{subscription_id}", "SETTLED#")
        return [(Settlement.model_validate(item["record"]), item["settled_by"]) for item in items]

    def settle(
        self, tenant_id: str, subscription_id: str, settlement: Settlement, invoice_id: str
    ) -> None:
        """Record an invoice's settlement of a period, once: only over the settler it saw."""
        item = {
            "pk": f"T#{tenant_id}#SUB#{subscription_id}",
            "sk": f"SETTLED#{_instant_key(settlement.period_start)}",
            "type": "settlement",
            "record": settlement.model_dump(mode="json"),
            "settled_by": invoice_id,
        }
        if settlement.previous_settler is None:
            condition = "attribute_not_exists(pk) OR settled_by = :invoice"
            values = {":invoice": invoice_id}
        else:
            condition = "settled_by = :previous OR settled_by = :invoice"
            values = {":invoice": invoice_id, ":previous": settlement.previous_settler}
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_serialize(item),
                ConditionExpression=condition,
                ExpressionAttributeValues=_serialize(values),
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _storage_error(exc) from exc
            raise Conflict(
                f"period {settlement.period_start} was settled by another invoice"
            ) from exc
        except BotoCoreError as exc:
            raise _storage_error(exc) from exc

    def get_subscription(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        item = self._get(f"T#{tenant_id}#SUB#{subscription_id}", "SUB")
        return None if item is None else Subscription.model_validate(item["record"])

    def list_customer_subscriptions(self, tenant_id: str, customer_id: str) -> list[Subscription]:
        items = self._query_all(f"T#{tenant_id}#CUSTOMER#{customer_id}", "SUB#")
        return [Subscription.model_validate(item["record"]) for item in items]

    # --- events ----------------------------------------------------------------------------

    def put_event(self, event: StoredEvent) -> bool:
        """Store an event unless its id was seen before. True when stored, False for a duplicate.

        The condition makes the first write win: a retry of a lost response, or the same event
        in two requests, finds the item and changes nothing.
        """
        item = {
            "pk": f"T#{event.tenant_id}#EVENTS#{event_lane(event.event_id)}",
            "sk": f"EVENT#{event.event_id}",
            "gsi1pk": (
                f"T#{event.tenant_id}#CUSTOMER_EVENTS#{event.external_customer_id}"
                f"#{_customer_event_shard(event.event_id)}"
            ),
            "gsi1sk": f"{_instant_key(event.timestamp)}#{event.event_id}",
            "type": "event",
            "tenant_id": event.tenant_id,
            "event_id": event.event_id,
            "event_name": event.event_name,
            "external_customer_id": event.external_customer_id,
            "timestamp": _instant_key(event.timestamp),
            "properties": {k: _storable(v) for k, v in event.properties.items()},
            "received_at": _instant_key(event.received_at),
        }
        if event.source is not None:
            item["source"] = event.source
        if event.customer_id is not None:
            item["customer_id"] = event.customer_id
        refused = self._conditional(
            "put_item",
            TableName=self.table_name,
            Item=_serialize(item),
            ConditionExpression="attribute_not_exists(pk)",
        )
        return refused is None

    def list_customer_events(
        self, tenant_id: str, external_customer_id: str, limit: int, cursor: str | None
    ) -> EventPage:
        """A customer's events, newest first, merged from the index shards.

        The cursor is the sort key of the last event returned: every shard resumes below it.
        """
        before = _decode_cursor(cursor) if cursor else None
        merged: list[dict[str, Any]] = []
        for shard in range(CUSTOMER_EVENT_SHARDS):
            # One more than a page: whether another page exists is then known, not guessed.
            items, _ = self._query_customer_shard(
                f"T#{tenant_id}#CUSTOMER_EVENTS#{external_customer_id}#{shard}", before, limit + 1
            )
            merged.extend(items)
        merged.sort(key=lambda item: item["gsi1sk"], reverse=True)
        page = merged[:limit]
        more = len(merged) > limit
        next_cursor = _encode_cursor(page[-1]["gsi1sk"]) if more and page else None
        return EventPage([_event_from_item(item) for item in page], next_cursor)

    def customer_events_between(
        self, tenant_id: str, external_customer_id: str, start: datetime, end: datetime
    ) -> Iterator[StoredEvent]:
        """Every stored event of a customer timestamped in [start, end), from the index shards.

        The recovery path: it reads raw events, so its cost grows with them. Never on a hot path.
        """
        for shard in range(CUSTOMER_EVENT_SHARDS):
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "IndexName": "gsi1",
                "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk BETWEEN :low AND :high",
                "ExpressionAttributeValues": _serialize(
                    {
                        ":pk": f"T#{tenant_id}#CUSTOMER_EVENTS#{external_customer_id}#{shard}",
                        ":low": _instant_key(start),
                        ":high": _instant_key(end),
                    }
                ),
            }
            while True:
                response = self._call("query", **request)
                for raw in response.get("Items", []):
                    event = _event_from_item(_deserialize(raw))
                    if start <= event.timestamp < end:
                        yield event
                if "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def read_counter(self, key: CounterKey) -> tuple[CounterState, dict[str, Any]] | None:
        """A counter and its raw item (for a conditional rewrite), or None if it has none."""
        item = self._get(key.pk, key.sk)
        return None if item is None else (_counter_state(item), item)

    def rewrite_counter(
        self, key: CounterKey, state: CounterState, seen: dict[str, Any] | None
    ) -> bool:
        """Set a counter to recounted values, if it did not change since it was read as `seen`
        (None: it did not exist). Watermarks are kept: the stream goes on from where it was."""
        names = {f"#{a}": a for a in ("quantity", "total", "count", "max", "min", "latest")}
        # The recount includes the events a backdated subscription predates: mark the counter
        # backfilled, so that a backfill arriving later does not add them a second time.
        assignments = [
            _COUNTER_LABELS,
            "#quantity = :quantity",
            "#total = :total",
            "#count = :count",
            "backfilled = if_not_exists(backfilled, :reconciled)",
        ]
        values: dict[str, Any] = {
            ":quantity": plain(state.quantity),
            ":total": plain(state.total),
            ":count": plain(state.count),
            ":reconciled": "reconcile",
            **_counter_labels(key),
        }
        removals = []
        for attribute in ("max", "min", "latest"):
            value = getattr(state, attribute)
            if value is None:
                removals.append(f"#{attribute}")
            else:
                assignments.append(f"#{attribute} = :{attribute}")
                values[f":{attribute}"] = plain(value)
        if state.latest_order is not None:
            assignments.append("latest_order = :order")
            values[":order"] = state.latest_order
        expression = f"SET {', '.join(assignments)}"
        if removals:
            expression += f" REMOVE {', '.join(removals)}"
        if seen is None:
            condition = "attribute_not_exists(pk)"
        else:
            # Unchanged since read: the same sums and the same watermarks.
            checks = []
            for index, (attribute, value) in enumerate(sorted(seen.items())):
                if attribute.startswith("wm_") or attribute in ("quantity", "total", "count"):
                    names[f"#seen{index}"] = attribute
                    values[f":seen{index}"] = value
                    checks.append(f"#seen{index} = :seen{index}")
            condition = " AND ".join(checks) or "attribute_exists(pk)"
        refused = self._conditional(
            "update_item",
            TableName=self.table_name,
            Key=_serialize({"pk": key.pk, "sk": key.sk}),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames={
                n: a for n, a in names.items() if n in expression + condition
            },
            ExpressionAttributeValues=_serialize(values),
        )
        return refused is None

    def add_backfill(self, key: CounterKey, state: CounterState, guard: str) -> None:
        """Add a one-off recount (events a new subscription predates) exactly once: the counter
        remembers the guard, and a second attempt with it changes nothing."""
        values: dict[str, Any] = {
            ":quantity": plain(state.quantity),
            ":total": plain(state.total),
            ":count": plain(state.count),
            ":guard": guard,
            **_counter_labels(key),
        }
        self._conditional(
            "update_item",
            TableName=self.table_name,
            Key=_serialize({"pk": key.pk, "sk": key.sk}),
            UpdateExpression=(
                f"ADD #quantity :quantity, #total :total, #count :count "
                f"SET backfilled = :guard, {_COUNTER_LABELS}"
            ),
            ConditionExpression="attribute_not_exists(backfilled)",
            ExpressionAttributeNames={
                "#quantity": "quantity",
                "#total": "total",
                "#count": "count",
            },
            ExpressionAttributeValues=_serialize(values),
        )

    def _query_customer_shard(
        self, partition: str, before: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        condition = "gsi1pk = :pk"
        values: dict[str, Any] = {":pk": partition}
        if before is not None:
            condition += " AND gsi1sk < :before"
            values[":before"] = before
        response = self._call(
            "query",
            TableName=self.table_name,
            IndexName="gsi1",
            KeyConditionExpression=condition,
            ExpressionAttributeValues=_serialize(values),
            ScanIndexForward=False,
            Limit=limit,
        )
        items = [_deserialize(raw) for raw in response.get("Items", [])]
        return items, "LastEvaluatedKey" in response

    # --- rate limiting ---------------------------------------------------------------------

    def count_request(self, tenant_id: str, second: int, expires_at: int) -> int:
        """Add one request to a tenant's window and return the window's count."""
        response = self._call(
            "update_item",
            TableName=self.table_name,
            Key=_serialize({"pk": f"T#{tenant_id}#RATE#{second}", "sk": "RATE"}),
            UpdateExpression="ADD requests :one SET expires_at = if_not_exists(expires_at, :ttl)",
            ExpressionAttributeValues=_serialize({":one": 1, ":ttl": expires_at}),
            ReturnValues="UPDATED_NEW",
        )
        return int(_deserialize(response["Attributes"])["requests"])

    # --- usage counters --------------------------------------------------------------------

    def add_to_counter(self, delta: CounterDelta) -> None:
        """Add a batch's contributions to a usage counter exactly once.

        The update carries, per lane, the condition "nothing at or after my first record was
        added yet" (`attribute_not_exists(wm) OR wm < :first`). When a redelivered batch fails
        it, the counter's current watermarks say which records are new; those alone are added,
        under the condition that the watermarks did not move meanwhile.
        """
        known_watermarks: dict[str, str | None] | None = None
        for _ in range(_COUNTER_UPDATE_ATTEMPTS):
            pending = _unapplied(delta.contributions, known_watermarks)
            if not pending:
                return
            request = _counter_update_request(self.table_name, delta, pending, known_watermarks)
            try:
                self.client.update_item(**request)
                return
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise _storage_error(exc) from exc
                current = _deserialize(exc.response.get("Item") or {})
                known_watermarks = {
                    lane: current.get(_watermark(delta.attribute, lane)) for lane in pending
                }
            except BotoCoreError as exc:
                raise _storage_error(exc) from exc
        raise StorageUnavailable("usage counter kept changing under concurrent updates; retry")

    def raise_extreme(self, key: CounterKey, attribute: str, value: Decimal) -> None:
        """Keep the larger (`max`) or smaller (`min`) value: repeating it changes nothing."""
        beaten = "<" if attribute == "max" else ">"
        self._conditional_set(
            key,
            f"#{attribute} = :value",
            f"attribute_not_exists(#{attribute}) OR #{attribute} {beaten} :value",
            {":value": plain(value)},
            {f"#{attribute}": attribute},
        )

    def advance_latest(self, key: CounterKey, at: datetime, event_id: str, value: Decimal) -> None:
        """Keep the value of the latest event (ties: the greatest event id); repeatable."""
        self._conditional_set(
            key,
            "latest = :value, latest_order = :order",
            "attribute_not_exists(latest_order) OR latest_order < :order",
            {":value": plain(value), ":order": f"{_instant_key(at)}#{event_id}"},
            {},
        )

    def claim_unique(self, key: CounterKey, value_text: str, claimant: str) -> bool:
        """Record that `claimant` (a stream record) first brought this value into the counter.

        True when the claim is the claimant's, now or from an earlier delivery of the same
        record: then, and only then, the record adds 1 to the distinct count.
        """
        digest = hashlib.sha256(value_text.encode()).hexdigest()[:32]
        item = {"pk": key.pk, "sk": key.marker_sk(digest), "claimant": claimant}
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=_serialize(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise _storage_error(exc) from exc
            existing = _deserialize(exc.response.get("Item") or {})
            return existing.get("claimant") == claimant
        except BotoCoreError as exc:
            raise _storage_error(exc) from exc
        return True

    def period_counters(
        self, tenant_id: str, subscription_id: str, period_start: datetime
    ) -> dict[str, CounterState]:
        """Every feature's counter in one period of a subscription: one query, however many
        events were counted."""
        prefix = f"USAGE#{_instant_key(period_start)}#"
        items = self._query_all(f"T#{tenant_id}#SUB#{subscription_id}", prefix)
        return {item["feature_id"]: _counter_state(item) for item in items}

    def period_quantities(
        self, tenant_id: str, subscription_id: str, period_start: datetime
    ) -> dict[str, Decimal]:
        counters = self.period_counters(tenant_id, subscription_id, period_start)
        return {feature_id: state.quantity for feature_id, state in counters.items()}

    def window_counters(
        self,
        tenant_id: str,
        customer_id: str,
        feature_id: str,
        window: str,
        start: datetime,
        end: datetime,
    ) -> list[tuple[datetime, CounterState]]:
        """A customer's window counters of one kind starting in [start, end), oldest first."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": _serialize(
                {
                    ":pk": f"T#{tenant_id}#WINDOWS#{customer_id}#{feature_id}",
                    ":low": f"{window}#{_instant_key(start)}",
                    ":high": f"{window}#{_instant_key(end)}",
                }
            ),
            "ConsistentRead": True,
        }
        counters = []
        while True:
            response = self._call("query", **request)
            for raw in response.get("Items", []):
                item = _deserialize(raw)
                begins = datetime.fromisoformat(item["sk"].split("#", 1)[1])
                if begins < end:
                    counters.append((begins, _counter_state(item)))
            if "LastEvaluatedKey" not in response:
                return counters
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _conditional_set(
        self,
        key: CounterKey,
        assignments: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str],
    ) -> None:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": _serialize({"pk": key.pk, "sk": key.sk}),
            "UpdateExpression": f"SET {assignments}, {_COUNTER_LABELS}",
            "ConditionExpression": condition,
            "ExpressionAttributeValues": _serialize({**values, **_counter_labels(key)}),
        }
        if names:
            request["ExpressionAttributeNames"] = names
        self._conditional("update_item", **request)

    # --- building blocks -------------------------------------------------------------------

    def _put_record(
        self,
        pk: str,
        sk: str,
        record: BaseModel,
        exists_message: str,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        item = {
            "pk": pk,
            "sk": sk,
            "type": type(record).__name__.lower(),
            "record": record.model_dump(mode="json"),
            **(extra or {}),
        }
        self._put(item, condition="attribute_not_exists(pk)", exists=lambda: exists_message)

    def _conditional(self, operation: str, **request: Any) -> dict[str, Any] | None:
        """Run a conditional write: None when applied; when its condition failed, the item as
        it stood (empty unless the request asks for it on condition failure)."""
        try:
            getattr(self.client, operation)(**request)
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return _deserialize(exc.response.get("Item") or {})
            raise _storage_error(exc) from exc
        except BotoCoreError as exc:
            raise _storage_error(exc) from exc
        return None

    def _put(self, item: dict[str, Any], condition: str, exists: Any) -> None:
        try:
            self.client.put_item(
                TableName=self.table_name, Item=_serialize(item), ConditionExpression=condition
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                raise AlreadyExists(exists()) from exc
            raise _storage_error(exc) from exc
        except BotoCoreError as exc:
            raise _storage_error(exc) from exc

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        response = self._call(
            "get_item",
            TableName=self.table_name,
            Key=_serialize({"pk": pk, "sk": sk}),
            ConsistentRead=True,
        )
        raw = response.get("Item")
        return None if raw is None else _deserialize(raw)

    def _query_all(self, pk: str, sk_prefix: str) -> list[dict[str, Any]]:
        return list(self._iter_query(pk, sk_prefix))

    def _iter_query(self, pk: str, sk_prefix: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": _serialize({":pk": pk, ":prefix": sk_prefix}),
            "ConsistentRead": True,
        }
        while True:
            response = self._call("query", **request)
            for raw in response.get("Items", []):
                yield _deserialize(raw)
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**request)
        except (ClientError, BotoCoreError) as exc:
            raise _storage_error(exc) from exc
        return response


def _unapplied(
    contributions: Mapping[str, list[tuple[str, Decimal]]],
    watermarks: Mapping[str, str | None] | None,
) -> dict[str, list[tuple[str, Decimal]]]:
    """The contributions above each lane's watermark (all of them while watermarks are unknown)."""
    pending = {}
    for lane, records in contributions.items():
        mark = None if watermarks is None else watermarks.get(lane)
        fresh = [(seq, amount) for seq, amount in records if mark is None or seq > mark]
        if fresh:
            pending[lane] = fresh
    return pending


_COUNTER_LABELS = "feature_id = :feature, period_start = :start, period_end = :end"


def _counter_labels(key: CounterKey) -> dict[str, Any]:
    return {
        ":feature": key.feature_id,
        ":start": _instant_key(key.start),
        ":end": _instant_key(key.end),
    }


def _watermark(attribute: str, lane: str) -> str:
    return f"wm_{lane}" if attribute == "quantity" else f"wm_{attribute}_{lane}"


def _counter_state(item: Mapping[str, Any]) -> CounterState:
    def number(name: str) -> Decimal | None:
        return None if item.get(name) is None else Decimal(item[name])

    return CounterState(
        quantity=number("quantity") or Decimal(0),
        total=number("total") or Decimal(0),
        count=number("count") or Decimal(0),
        max=number("max"),
        min=number("min"),
        latest=number("latest"),
        latest_order=item.get("latest_order"),
    )


def _counter_update_request(
    table_name: str,
    delta: CounterDelta,
    pending: Mapping[str, list[tuple[str, Decimal]]],
    watermarks: Mapping[str, str | None] | None,
) -> dict[str, Any]:
    total = sum((amount for records in pending.values() for _, amount in records), Decimal(0))
    values: dict[str, Any] = {":amount": plain(total), **_counter_labels(delta.key)}
    updates = [_COUNTER_LABELS]
    conditions = []
    for index, (lane, records) in enumerate(sorted(pending.items())):
        watermark = _watermark(delta.attribute, lane)
        values[f":last{index}"] = max(seq for seq, _ in records)
        updates.append(f"{watermark} = :last{index}")
        if watermarks is None:
            # First attempt: every record must be newer than what this lane already added.
            values[f":first{index}"] = min(seq for seq, _ in records)
            conditions.append(f"(attribute_not_exists({watermark}) OR {watermark} < :first{index})")
        elif watermarks.get(lane) is None:
            conditions.append(f"attribute_not_exists({watermark})")
        else:
            # Retry after reading the watermark: it must not have moved since.
            values[f":seen{index}"] = watermarks[lane]
            conditions.append(f"{watermark} = :seen{index}")
    return {
        "TableName": table_name,
        "Key": _serialize({"pk": delta.key.pk, "sk": delta.key.sk}),
        "UpdateExpression": f"ADD #counted :amount SET {', '.join(updates)}",
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": {"#counted": delta.attribute},
        "ExpressionAttributeValues": _serialize(values),
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }


def _key_record(item: Mapping[str, Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=item["key_id"],
        tenant_id=item["tenant_id"],
        name=item["name"],
        prefix=item["prefix"],
        secret_hash=item["secret_hash"],
        created_at=item["created_at"],
        last_used_day=item.get("last_used_day"),
        revoked_at=item.get("revoked_at"),
    )


def padded_sequence(sequence_number: str) -> str:
    return sequence_number.zfill(_SEQUENCE_WIDTH)


def _event_from_item(item: Mapping[str, Any]) -> StoredEvent:
    # Items were validated on the way in: rebuilding them needs no second validation, and the
    # aggregator does this for every event it counts.
    return StoredEvent.model_construct(
        tenant_id=item["tenant_id"],
        event_id=item["event_id"],
        event_name=item["event_name"],
        external_customer_id=item["external_customer_id"],
        timestamp=datetime.fromisoformat(item["timestamp"]),
        properties=dict(item.get("properties", {})),
        source=item.get("source"),
        customer_id=item.get("customer_id"),
        received_at=datetime.fromisoformat(item["received_at"]),
    )


def event_from_image(image: Mapping[str, Any]) -> StoredEvent | None:
    """The event in a stream record's NEW_IMAGE, or None for any other kind of item."""
    item = _deserialize(dict(image))
    if item.get("type") != "event":
        return None
    return _event_from_item(item)


def _storable(value: Any) -> Any:
    if isinstance(value, bool | str):
        return value
    return plain(Decimal(value))


def _serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _serializer.serialize(value) for key, value in item.items()}


def _deserialize(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _value(value) for key, value in raw.items()}


def _value(typed: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value. The types this table writes are read here directly: the
    aggregator reads every event this way, and boto3's generic deserializer costs more than
    the rest of its work on an event. Anything else goes to boto3's."""
    ((kind, value),) = typed.items()
    if kind == "S":
        return value
    if kind == "N":
        return Decimal(value)
    if kind == "M":
        return {key: _value(inner) for key, inner in value.items()}
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "L":
        return [_value(inner) for inner in value]
    return _deserializer.deserialize(typed)


def _encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": sort_key}).encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        before = decoded["before"]
    except (ValueError, KeyError, TypeError):
        raise _bad_cursor() from None
    if not isinstance(before, str):
        raise _bad_cursor()
    return before


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed(
        "cursor is not a cursor this API returned", [{"field": "cursor", "message": "unknown"}]
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _storage_error(exc: Exception) -> StorageUnavailable:
    reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return StorageUnavailable(f"the usage store is unavailable ({reason}); retry the request")
