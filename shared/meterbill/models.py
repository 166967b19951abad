"""The catalog and event shapes: what clients send and what the domain stores.

Request models validate and normalize input (exact decimals, canonical filter values, ISO 4217
currency codes). Domain models are what every other module passes around; dumping them in JSON
mode writes money and quantities as decimal strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from meterbill.money import is_known_currency
from meterbill.periods import BillingPeriod, Period, parse_instant, period_containing
from meterbill.values import canonical_text, parse_decimal

__all__ = [
    "Aggregation",
    "AggregationType",
    "BillingModel",
    "BulkEventsRequest",
    "Customer",
    "CustomerCreate",
    "EventRequest",
    "Feature",
    "FeatureCreate",
    "Plan",
    "PlanCreate",
    "Price",
    "StoredEvent",
    "Subscription",
    "SubscriptionCreate",
]

MAX_BULK_EVENTS = 1000
# Unit prices go down to 0.000015 per token and below: Stripe allows 12 decimal places.
MAX_AMOUNT_PLACES = 12
# Sort keys need four-digit years, and period arithmetic needs room before datetime's year 9999
# (a 12-year period past any accepted instant).
_EARLIEST_INSTANT = datetime(1000, 1, 1, tzinfo=UTC)
_LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


def _exact_amount(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_AMOUNT_PLACES:
        raise ValueError(f"must have at most {MAX_AMOUNT_PLACES} decimal places")
    return value


def _timestamp(value: str) -> str:
    try:
        instant = parse_instant(value)
    except (ValueError, OverflowError):
        # OverflowError: an offset that moves year 1 or 9999 out of datetime's range in UTC.
        raise ValueError("must be an RFC 3339 timestamp such as 2026-12-01T00:00:00Z") from None
    if not _EARLIEST_INSTANT <= instant < _LATEST_INSTANT:
        raise ValueError("must be between the years 1000 and 8999")
    return value


Name = Annotated[str, Field(min_length=1, max_length=255)]
Key = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._:\-]+$")]
Amount = Annotated[Decimal, Field(ge=0, allow_inf_nan=False), AfterValidator(_exact_amount)]
PositiveQuantity = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
Timestamp = Annotated[str, AfterValidator(_timestamp)]
PropertyValue = StrictBool | StrictInt | Decimal | StrictStr
# Event properties carry identifiers and counts, not documents: values are capped so an event
# stays near one DynamoDB write unit. Nested objects and lists are rejected, not flattened.
MAX_PROPERTY_TEXT = 1024
EventPropertyValue = (
    StrictBool | StrictInt | Decimal | Annotated[StrictStr, Field(max_length=MAX_PROPERTY_TEXT)]
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- features ---------------------------------------------------------------------------------


class AggregationType(StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    MAX = "MAX"
    MIN = "MIN"
    AVG = "AVG"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    LATEST = "LATEST"

    @property
    def needs_number(self) -> bool:
        return self not in (AggregationType.COUNT, AggregationType.UNIQUE_COUNT)


class Aggregation(_Request):
    type: AggregationType
    field: Annotated[str, Field(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _field_matches_type(self) -> Aggregation:
        if self.type is AggregationType.COUNT:
            if self.field is not None:
                raise ValueError("aggregation.field must be omitted for COUNT")
        elif self.field is None:
            what = "numeric property" if self.type.needs_number else "property"
            raise ValueError(f"aggregation.field is required for {self.type}: name the {what}")
        return self


class FeatureCreate(_Request):
    name: Name
    lookup_key: Key
    event_name: Name
    aggregation: Aggregation
    filters: dict[Annotated[str, Field(min_length=1)], list[PropertyValue]] = Field(
        default_factory=dict
    )

    @field_validator("filters")
    @classmethod
    def _canonical_filters(cls, filters: dict[str, list[PropertyValue]]) -> dict[str, list[str]]:
        for prop, allowed in filters.items():
            if not allowed:
                raise ValueError(f"filter {prop!r} needs at least one allowed value")
        return {
            prop: sorted({canonical_text(v) for v in allowed}) for prop, allowed in filters.items()
        }


class Feature(_Record):
    id: str
    name: str
    lookup_key: str
    event_name: str
    aggregation: Aggregation
    filters: dict[str, list[str]]
    created_at: datetime


# --- plans and prices -------------------------------------------------------------------------


class BillingModel(StrEnum):
    PACKAGE = "PACKAGE"
    PER_UNIT = "PER_UNIT"
    FLAT_FEE = "FLAT_FEE"
    TIERED = "TIERED"


class TierMode(StrEnum):
    VOLUME = "VOLUME"
    GRADUATED = "GRADUATED"


class _UsagePriceCreate(_Request):
    feature_id: Name
    # A free allowance taken off the period's quantity before packages or tiers.
    included_quantity: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal(0)
    # The line is at least this much while the subscription is active.
    minimum_amount: Amount | None = None


class PackagePriceCreate(_UsagePriceCreate):
    billing_model: Literal[BillingModel.PACKAGE]
    amount: Amount
    package_size: PositiveQuantity
    rounding: Literal["up", "down"] = "up"


class PerUnitPriceCreate(_UsagePriceCreate):
    billing_model: Literal[BillingModel.PER_UNIT]
    amount: Amount
    per: PositiveQuantity = Decimal(1)


class Tier(_Request):
    up_to: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)] | None
    unit_amount: Amount
    per: PositiveQuantity = Decimal(1)
    flat_amount: Amount = Decimal(0)


class TieredPriceCreate(_UsagePriceCreate):
    billing_model: Literal[BillingModel.TIERED]
    tier_mode: TierMode
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=50)]

    @field_validator("tiers")
    @classmethod
    def _ordered_tiers(cls, tiers: list[Tier]) -> list[Tier]:
        bounds = [tier.up_to for tier in tiers]
        if bounds[-1] is not None:
            raise ValueError("the last tier must be open: up_to null")
        if any(bound is None for bound in bounds[:-1]):
            raise ValueError("only the last tier may have up_to null")
        closed = [bound for bound in bounds[:-1] if bound is not None]
        if any(later <= earlier for earlier, later in pairwise(closed)):
            raise ValueError("up_to must increase from tier to tier")
        return tiers


class FlatFeePriceCreate(_Request):
    billing_model: Literal[BillingModel.FLAT_FEE]
    amount: Amount


PriceCreate = Annotated[
    PackagePriceCreate | PerUnitPriceCreate | FlatFeePriceCreate | TieredPriceCreate,
    Field(discriminator="billing_model"),
]


class BillingCycle(StrEnum):
    ANNIVERSARY = "anniversary"
    CALENDAR = "calendar"


class PlanCreate(_Request):
    name: Name
    lookup_key: Key
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    billing_period: BillingPeriod = BillingPeriod.MONTHLY
    billing_period_count: Annotated[int, Field(ge=1, le=12)] = 1
    billing_cycle: BillingCycle = BillingCycle.ANNIVERSARY
    prices: Annotated[list[PriceCreate], Field(min_length=1, max_length=100)]

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, currency: str) -> str:
        if not is_known_currency(currency):
            raise ValueError("must be an ISO 4217 currency code such as USD")
        return currency.upper()


class Price(_Record):
    id: str
    billing_model: BillingModel
    feature_id: str | None = None
    amount: Decimal | None = None
    package_size: Decimal | None = None
    rounding: Literal["up", "down"] | None = None
    per: Decimal | None = None
    tier_mode: TierMode | None = None
    tiers: list[Tier] | None = None
    included_quantity: Decimal = Decimal(0)
    minimum_amount: Decimal | None = None


class Plan(_Record):
    id: str
    name: str
    lookup_key: str
    currency: str
    billing_period: BillingPeriod
    billing_period_count: int
    billing_cycle: BillingCycle = BillingCycle.ANNIVERSARY
    prices: list[Price]
    created_at: datetime


# --- customers and subscriptions --------------------------------------------------------------


def _iana_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as Europe/Paris") from None
    return name


TimeZoneName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_iana_timezone)]


class CustomerCreate(_Request):
    external_id: Name
    name: Name
    email: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    timezone: TimeZoneName = "UTC"


class Customer(_Record):
    id: str
    external_id: str
    name: str
    email: str | None = None
    timezone: str = "UTC"
    created_at: datetime


class SubscriptionCreate(_Request):
    customer_id: Name | None = None
    external_customer_id: Name | None = None
    plan_id: Name
    start_date: Timestamp | None = None

    @model_validator(mode="after")
    def _one_customer_reference(self) -> SubscriptionCreate:
        if (self.customer_id is None) == (self.external_customer_id is None):
            raise ValueError("give exactly one of customer_id or external_customer_id")
        return self


class Subscription(_Record):
    id: str
    customer_id: str
    external_customer_id: str
    plan_id: str
    status: Literal["active", "canceled"]
    start_date: datetime
    billing_period: BillingPeriod
    billing_period_count: int
    billing_cycle: BillingCycle = BillingCycle.ANNIVERSARY
    timezone: str = "UTC"
    created_at: datetime
    # The start of the next period to invoice; None once the last period is invoiced.
    next_close_start: datetime | None = None
    # Usage at or after this instant does not count (a cancellation); None while it runs on.
    ended_at: datetime | None = None
    cancel_at_period_end: bool = False

    def period_at(self, instant: datetime) -> Period | None:
        """The billing period holding `instant`; None before the start."""
        return period_containing(
            self.start_date,
            self.billing_period,
            self.billing_period_count,
            instant,
            self.timezone,
            self.billing_cycle,
        )


class SubscriptionCancel(_Request):
    at: Literal["now", "period_end"]


class TenantSettings(_Request):
    """Per-tenant billing settings."""

    # Periods are invoiced this long after they end, so that late events can still arrive.
    invoice_grace_period_seconds: Annotated[int, Field(ge=0, le=7 * 86_400)] = 3600
    # Events older than this are refused at ingest: their period is long invoiced.
    backdating_limit_days: Annotated[int, Field(ge=1, le=366)] = 35


class LineKind(StrEnum):
    USAGE = "usage"
    FLAT_FEE = "flat_fee"
    LATE_USAGE = "late_usage"


class InvoiceLine(_Record):
    price_id: str
    feature_id: str | None
    description: str
    quantity: Decimal
    amount: Decimal
    kind: LineKind
    period_start: datetime
    period_end: datetime


class Settlement(_Record):
    """What an invoice has billed, in total, for one period: per price, quantity and amount."""

    period_start: datetime
    period_end: datetime
    prices: dict[str, tuple[Decimal, Decimal]]
    previous_settler: str | None = None


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    FINALIZED = "finalized"
    VOID = "void"


class Invoice(_Record):
    id: str
    number: str | None = None
    status: InvoiceStatus
    subscription_id: str
    customer_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    line_items: list[InvoiceLine]
    subtotal: Decimal
    total: Decimal
    settlements: list[Settlement]
    created_at: datetime
    finalized_at: datetime | None = None
    voided_at: datetime | None = None


# --- events -----------------------------------------------------------------------------------


class EventRequest(_Request):
    """One usage event, shaped like Flexprice's event API so its SDK works unchanged.

    Strings are kept exactly as sent: a property value's spaces are part of what filters
    and distinct counts compare."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    event_name: Name
    external_customer_id: Name
    event_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    timestamp: Timestamp | None = None
    properties: dict[Annotated[str, Field(min_length=1, max_length=255)], EventPropertyValue] = (
        Field(default_factory=dict, max_length=100)
    )
    source: Annotated[str, Field(max_length=255)] | None = None
    customer_id: Annotated[str, Field(max_length=255)] | None = None

    @field_validator("properties")
    @classmethod
    def _storable_numbers(cls, properties: dict[str, PropertyValue]) -> dict[str, PropertyValue]:
        for name, value in properties.items():
            is_number = isinstance(value, int | Decimal) and not isinstance(value, bool)
            if is_number and parse_decimal(value) is None:
                raise ValueError(f"property {name!r} is not a finite number of at most 38 digits")
        return properties


class BulkEventsRequest(_Request):
    """The envelope only: each event is validated on its own so errors name their index."""

    events: Annotated[list[object], Field(min_length=1, max_length=MAX_BULK_EVENTS)]


class StoredEvent(_Record):
    tenant_id: str
    event_id: str
    event_name: str
    external_customer_id: str
    timestamp: datetime
    properties: dict[str, PropertyValue]
    source: str | None = None
    customer_id: str | None = None
    received_at: datetime
