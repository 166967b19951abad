"""An independent reference model of meterbill's billing contract, written for clarity.

It shares no code with the `meterbill` package: the pipeline (ingest, stream, aggregator,
counters, pricing) and this module are two implementations of one contract, and the tests in
this folder check that they agree to the minor unit. Speed does not matter here; every rule is a
plain loop over plain data, and all money arithmetic is exact (`fractions.Fraction`) until the
single rounding of each line amount.

Inputs are the JSON shapes a client sends, as Python values (numbers as `int` or `Decimal`,
never `float`):

* catalog: `{"features": [feature, ...], "plan": plan}` where each feature carries its `id`
  and each usage price names a feature by that id;
* subscription: `{"external_customer_id", "start_date", "timezone"}` (the plan gives the
  period, its count and the cycle);
* events: every event the API accepted, in the order it accepted them, duplicates included.

The contract in one place:

* Matching: same event name, and every filter property present with an allowed value, compared
  as canonical text (numbers and numeric strings in plain normalized decimal form, booleans as
  "true"/"false", other strings as they are).
* Aggregations over the matching events of a period: SUM, COUNT, MAX, MIN, AVG (exact mean
  rounded half-up to 12 places), UNIQUE_COUNT (distinct canonical texts), LATEST (value of the
  latest timestamp, ties to the greatest event_id). MAX/MIN/AVG/LATEST of nothing is 0.
* Prices: PACKAGE, PER_UNIT, FLAT_FEE, TIERED (VOLUME or GRADUATED); `included_quantity` is
  taken off first, a negative quantity bills as zero, `minimum_amount` is a floor on the line.
* Each line amount is rounded once to the currency's minor unit, half away from zero; the total
  is the sum of rounded lines.
* Periods are computed in the subscription's local wall time (anniversary or calendar cycle),
  with DST gaps moved forward and ambiguous wall times taking their first occurrence.
* Usage windows: a local day runs from local midnight to the next; a local hour runs from one
  instant where the local clock reads hh:00:00 to the next. The contract says "local hour"
  only; this reading (the repeated hour of a fall-back night is a window of its own, a 30-minute
  shift makes a 30- or 90-minute hour) is the one meterbill documents, chosen here on purpose.
* Ingest refusals (`rejection_reasons`) follow the contract's value rules plus the README's
  time window (the tenant's backdating limit, 5 minutes ahead). A numeric string is what a
  person writes as a number: sign, digits, point, exponent; no spaces, underscores or non-ASCII
  digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

__all__ = [
    "Period",
    "aggregate",
    "canonical_text",
    "decimal_of",
    "line_amount",
    "local_wall_to_utc",
    "matches",
    "minor_unit_exponent",
    "number_of",
    "parse_timestamp",
    "period_bounds",
    "period_containing",
    "reference_invoice",
    "reference_usage_windows",
    "rejection_reasons",
    "round_half_away_from_zero",
    "round_money",
    "usage_price_raw_amount",
]

# A numeric string as a person writes one: sign, digits with an optional point, an optional
# exponent. Anything else ("NaN", "1_000", " 7") is compared as text and is not a number.
_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NUMERIC_AGGREGATIONS = {"SUM", "MAX", "MIN", "AVG", "LATEST"}
_AVG_PLACES = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)

# ISO 4217 exponents of the currencies the tests use; others are read from the iso4217 package.
_KNOWN_EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "KWD": 3, "BHD": 3, "CLP": 0}


# --- numbers and canonical text ---------------------------------------------------------------


def number_of(value: Any) -> Fraction | None:
    """The exact number a property value stands for, or None when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, Decimal):
        return Fraction(value) if value.is_finite() else None
    if isinstance(value, Fraction):
        return value
    if isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value):
        return Fraction(Decimal(value))
    return None


def decimal_text(number: Fraction) -> str:
    """Plain decimal text of a terminating fraction: no exponent, no trailing zeros, "0" for 0."""
    sign = "-" if number < 0 else ""
    magnitude = abs(number)
    places = 0
    while magnitude.denominator != 1:
        magnitude *= 10
        places += 1
        if places > 200:
            raise ValueError(f"{number} has no terminating decimal expansion")
    digits = str(magnitude.numerator)
    if places == 0:
        return "0" if digits == "0" else sign + digits
    digits = digits.rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def decimal_of(number: Fraction) -> Decimal:
    return Decimal(decimal_text(number))


def canonical_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    number = number_of(value)
    if number is not None:
        return decimal_text(number)
    return str(value)


def round_half_away_from_zero(number: Fraction, places: int) -> Fraction:
    scale = Fraction(10) ** places
    scaled = abs(number) * scale
    whole = scaled.numerator // scaled.denominator
    if scaled - whole >= Fraction(1, 2):
        whole += 1
    rounded = Fraction(whole) / scale
    return -rounded if number < 0 else rounded


def minor_unit_exponent(currency: str) -> int:
    code = currency.upper()
    if code in _KNOWN_EXPONENTS:
        return _KNOWN_EXPONENTS[code]
    from iso4217 import Currency  # an independent data package, not meterbill's code

    exponent = Currency(code).exponent
    return 2 if exponent is None else int(exponent)


def round_money(amount: Fraction, currency: str) -> Decimal:
    exponent = minor_unit_exponent(currency)
    rounded = round_half_away_from_zero(amount, exponent)
    return Decimal(decimal_text(rounded)).quantize(Decimal(1).scaleb(-exponent))


# --- time ---------------------------------------------------------------------------------------


def parse_timestamp(value: str | datetime) -> datetime:
    """RFC 3339 text (no offset means UTC) or an aware datetime, as an aware UTC datetime."""
    if isinstance(value, datetime):
        instant = value
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        instant = datetime.fromisoformat(text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC)


def local_wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time that `instant` shows in `zone`."""
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _whole_seconds(instant: datetime) -> int:
    return (instant - _EPOCH) // _ONE_SECOND


def local_wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive wall time names in `zone`.

    An ambiguous wall time (clocks turned back) takes its first occurrence. A wall time that does
    not exist (clocks turned forward) moves forward to the first instant after the gap, which is
    the transition itself: 02:30 on a spring-forward night in New York becomes 03:00 EDT.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if local_wall(first, zone) == wall:
        return first
    # In the gap. fold=1 reads the wall time with the offset after the transition, which gives
    # an instant before it; fold=0 gives one after. Search the whole second in between where
    # the local clock first reaches `wall` (transitions happen on whole seconds).
    low = _whole_seconds(wall.replace(tzinfo=zone, fold=1).astimezone(UTC))
    high = _whole_seconds(first) + 1
    assert local_wall(_EPOCH + low * _ONE_SECOND, zone) < wall
    while high - low > 1:
        middle = (low + high) // 2
        if local_wall(_EPOCH + middle * _ONE_SECOND, zone) >= wall:
            high = middle
        else:
            low = middle
    return _EPOCH + high * _ONE_SECOND


_UNIT = {
    "DAILY": relativedelta(days=1),
    "WEEKLY": relativedelta(weeks=1),
    "MONTHLY": relativedelta(months=1),
    "QUARTERLY": relativedelta(months=3),
    "ANNUAL": relativedelta(years=1),
}


@dataclass(frozen=True)
class Period:
    index: int
    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def calendar_floor(wall: datetime, billing_period: str) -> datetime:
    """The calendar boundary at or before a wall time: day, ISO week, month, quarter, year."""
    midnight = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if billing_period == "DAILY":
        return midnight
    if billing_period == "WEEKLY":
        return midnight - timedelta(days=midnight.weekday())  # Monday is weekday 0
    if billing_period == "MONTHLY":
        return midnight.replace(day=1)
    if billing_period == "QUARTERLY":
        first_month_of_quarter = (midnight.month - 1) // 3 * 3 + 1
        return midnight.replace(month=first_month_of_quarter, day=1)
    if billing_period == "ANNUAL":
        return midnight.replace(month=1, day=1)
    raise ValueError(f"unknown billing period {billing_period!r}")


def period_start(plan: Mapping[str, Any], subscription: Mapping[str, Any], index: int) -> datetime:
    """Start of period `index` (0 is the first period, which starts at the start date)."""
    start = parse_timestamp(subscription["start_date"])
    if index == 0:
        return start
    zone = ZoneInfo(subscription.get("timezone") or "UTC")
    unit = _UNIT[plan.get("billing_period", "MONTHLY")]
    count = int(plan.get("billing_period_count", 1))
    local_start = local_wall(start, zone)
    if plan.get("billing_cycle", "anniversary") == "calendar":
        # Boundaries every `count` units from the calendar boundary at or before the start; the
        # first period runs from the start date to the first boundary after it.
        base = calendar_floor(local_start, plan.get("billing_period", "MONTHLY"))
        return local_wall_to_utc(base + unit * (index * count), zone)
    # Anniversary: always from the anchor, so Jan 31 -> Feb 28 -> Mar 31.
    return local_wall_to_utc(local_start + unit * (index * count), zone)


def period_bounds(plan: Mapping[str, Any], subscription: Mapping[str, Any], index: int) -> Period:
    return Period(
        index, period_start(plan, subscription, index), period_start(plan, subscription, index + 1)
    )


def period_containing(
    plan: Mapping[str, Any], subscription: Mapping[str, Any], instant: datetime
) -> Period:
    """The period holding `instant`; the first period for instants before the start date."""
    index = 0
    while period_start(plan, subscription, index + 1) <= instant:
        index += 1
    return period_bounds(plan, subscription, index)


# --- events and aggregation -------------------------------------------------------------------


def deduplicated(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The first accepted copy of each event id wins; later copies are ignored."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        kept.append(event)
    return kept


def matches(feature: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    if event["event_name"] != feature["event_name"]:
        return False
    properties = event.get("properties") or {}
    for name, allowed in (feature.get("filters") or {}).items():
        if name not in properties:
            return False
        allowed_texts = {canonical_text(value) for value in allowed}
        if canonical_text(properties[name]) not in allowed_texts:
            return False
    return True


def rejection_reasons(
    features: Sequence[Mapping[str, Any]],
    event: Mapping[str, Any],
    received_at: datetime | None = None,
    backdating_limit_days: int = 35,
) -> list[str]:
    """Why ingest must answer 400 for this event (empty when it is acceptable).

    Besides the contract's value rules, ingest refuses (as the README documents) timestamps
    more than the tenant's backdating limit in the past or more than 5 minutes in the future of
    `received_at`; without `received_at` that check is skipped.
    """
    reasons = []
    properties = event.get("properties") or {}
    if received_at is not None:
        instant = parse_timestamp(event["timestamp"])
        if instant < received_at - timedelta(days=backdating_limit_days):
            reasons.append("timestamp is beyond the backdating limit")
        if instant > received_at + timedelta(minutes=5):
            reasons.append("timestamp is more than 5 minutes in the future")
    for feature in features:
        if not matches(feature, event):
            continue
        kind = feature["aggregation"]["type"]
        field = feature["aggregation"].get("field")
        if kind in _NUMERIC_AGGREGATIONS and number_of(properties.get(field)) is None:
            reasons.append(f"{feature['id']}: {field} is not numeric")
        if kind == "UNIQUE_COUNT" and field not in properties:
            reasons.append(f"{feature['id']}: {field} is missing")
    return reasons


def aggregate(feature: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> Fraction | None:
    """The feature's aggregation over events that already match it; None for "no value"."""
    kind = feature["aggregation"]["type"]
    field = feature["aggregation"].get("field")
    if kind == "COUNT":
        return Fraction(len(events))
    if kind == "UNIQUE_COUNT":
        return Fraction(len({canonical_text(e["properties"][field]) for e in events}))
    values = [number_of(e["properties"][field]) for e in events]
    if kind == "SUM":
        return sum(values, Fraction(0))  # type: ignore[arg-type]
    if not values:
        return None
    if kind == "MAX":
        return max(values)  # type: ignore[type-var]
    if kind == "MIN":
        return min(values)  # type: ignore[type-var]
    if kind == "AVG":
        mean = sum(values, Fraction(0)) / len(values)  # type: ignore[arg-type]
        return round_half_away_from_zero(mean, _AVG_PLACES)
    if kind == "LATEST":
        latest = events[0]
        for event in events[1:]:
            if (parse_timestamp(event["timestamp"]), event["event_id"]) > (
                parse_timestamp(latest["timestamp"]),
                latest["event_id"],
            ):
                latest = event
        return number_of(latest["properties"][field])
    raise ValueError(f"unknown aggregation {kind!r}")


def quantity_of(feature: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> Fraction:
    value = aggregate(feature, events)
    return Fraction(0) if value is None else value


# --- prices -----------------------------------------------------------------------------------


def _fraction(value: Any, default: Any = None) -> Fraction:
    if value is None:
        value = default
    number = number_of(value if not isinstance(value, float) else str(value))
    if number is None:
        raise ValueError(f"{value!r} is not a number")
    return number


def _ceil(number: Fraction) -> int:
    return -((-number.numerator) // number.denominator)


def _floor(number: Fraction) -> int:
    return number.numerator // number.denominator


def tiered_amount(price: Mapping[str, Any], billable: Fraction) -> Fraction:
    if billable <= 0:
        return Fraction(0)
    tiers = price["tiers"]
    if price["tier_mode"] == "VOLUME":
        chosen = tiers[-1]
        for tier in tiers:
            if tier.get("up_to") is None or _fraction(tier["up_to"]) >= billable:
                chosen = tier
                break
        per = _fraction(chosen.get("per"), 1)
        unit = _fraction(chosen["unit_amount"])
        return billable / per * unit + _fraction(chosen.get("flat_amount"), 0)
    if price["tier_mode"] == "GRADUATED":
        total = Fraction(0)
        previous_up_to = Fraction(0)
        for tier in tiers:
            up_to = None if tier.get("up_to") is None else _fraction(tier["up_to"])
            top = billable if up_to is None else min(billable, up_to)
            piece = top - previous_up_to
            if piece > 0:
                per = _fraction(tier.get("per"), 1)
                unit = _fraction(tier["unit_amount"])
                total += piece / per * unit + _fraction(tier.get("flat_amount"), 0)
            if up_to is None:
                break
            previous_up_to = up_to
        return total
    raise ValueError(f"unknown tier mode {price['tier_mode']!r}")


def usage_price_raw_amount(price: Mapping[str, Any], quantity: Fraction) -> Fraction:
    """The exact line amount of a usage price before rounding (minimum applied)."""
    included = _fraction(price.get("included_quantity"), 0)
    billable = max(Fraction(0), quantity - included)
    model = price["billing_model"]
    if model == "PACKAGE":
        size = _fraction(price["package_size"])
        packages = billable / size
        count = _floor(packages) if price.get("rounding", "up") == "down" else _ceil(packages)
        raw = _fraction(price["amount"]) * count
    elif model == "PER_UNIT":
        raw = billable / _fraction(price.get("per"), 1) * _fraction(price["amount"])
    elif model == "TIERED":
        raw = tiered_amount(price, billable)
    else:
        raise ValueError(f"{model!r} is not a usage price")
    if price.get("minimum_amount") is not None:
        raw = max(raw, _fraction(price["minimum_amount"]))
    return raw


def line_amount(price: Mapping[str, Any], quantity: Fraction, currency: str) -> Decimal:
    if price["billing_model"] == "FLAT_FEE":
        return round_money(_fraction(price["amount"]), currency)
    return round_money(usage_price_raw_amount(price, quantity), currency)


# --- the proposed invoice -----------------------------------------------------------------------


def events_in(
    feature: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    external_customer_id: str,
    start: datetime,
    end: datetime,
    not_before: datetime,
) -> list[Mapping[str, Any]]:
    """Matching events of one customer with `max(start, not_before) <= timestamp < end`."""
    chosen = []
    for event in events:
        if event["external_customer_id"] != external_customer_id:
            continue
        instant = parse_timestamp(event["timestamp"])
        if instant < start or instant < not_before or instant >= end:
            continue
        if matches(feature, event):
            chosen.append(event)
    return chosen


def reference_invoice(
    catalog: Mapping[str, Any],
    subscription: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    """The proposed invoice of the period holding `now`.

    Returns `{"period_start", "period_end", "currency", "lines", "subtotal", "total"}`; each line
    is `{"price_index", "kind", "feature_id", "quantity", "amount"}` in plan price order,
    quantities and amounts as Decimals.
    """
    plan = catalog["plan"]
    features = {feature["id"]: feature for feature in catalog["features"]}
    start_date = parse_timestamp(subscription["start_date"])
    period = period_containing(plan, subscription, max(now, start_date))
    stored = deduplicated(events)

    lines = []
    for index, price in enumerate(plan["prices"]):
        if price["billing_model"] == "FLAT_FEE":
            lines.append(
                {
                    "price_index": index,
                    "kind": "flat_fee",
                    "feature_id": None,
                    "quantity": Decimal(1),
                    "amount": line_amount(price, Fraction(1), plan["currency"]),
                }
            )
            continue
        feature = features[price["feature_id"]]
        counted = events_in(
            feature,
            stored,
            subscription["external_customer_id"],
            period.start,
            period.end,
            start_date,
        )
        quantity = quantity_of(feature, counted)
        lines.append(
            {
                "price_index": index,
                "kind": "usage",
                "feature_id": feature["id"],
                "quantity": decimal_of(quantity),
                "amount": line_amount(price, quantity, plan["currency"]),
            }
        )
    subtotal = sum((line["amount"] for line in lines), Decimal(0))
    return {
        "period_start": period.start,
        "period_end": period.end,
        "currency": plan["currency"],
        "lines": lines,
        "subtotal": subtotal,
        "total": subtotal,
    }


# --- usage windows ------------------------------------------------------------------------------


_QUARTER_HOUR = timedelta(minutes=15)


def _strikes_the_hour(instant: datetime, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone)
    return local.minute == 0 and local.second == 0 and local.microsecond == 0


def hour_windows(
    zone: ZoneInfo, first: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """Local hours: from one instant where the local clock reads hh:00:00 to the next.

    Usually 60 minutes. When clocks go back the repeated hour is a window of its own; in a zone
    that shifts by 30 minutes an hour can last 30 or 90 minutes. Every UTC offset in use is a
    multiple of 15 minutes, so the instants to look at are UTC quarter-hour marks.
    """
    mark = first.astimezone(UTC).replace(second=0, microsecond=0)
    mark -= timedelta(minutes=mark.minute % 15)
    while not _strikes_the_hour(mark, zone):
        mark -= _QUARTER_HOUR
    windows = []
    while mark < until:
        end = mark + _QUARTER_HOUR
        while not _strikes_the_hour(end, zone):
            end += _QUARTER_HOUR
        windows.append((mark, end))
        mark = end
    return windows


def day_windows(
    zone: ZoneInfo, first: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """Local days: from local midnight to the next, a missing midnight moved past its gap."""
    day = local_wall(first, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    start = local_wall_to_utc(day, zone)
    while start > first:  # `first` sits before a midnight that a gap pushed forward
        day -= timedelta(days=1)
        start = local_wall_to_utc(day, zone)
    windows = []
    while start < until:
        end = local_wall_to_utc(day + timedelta(days=1), zone)
        windows.append((start, end))
        day, start = day + timedelta(days=1), end
    return windows


def window_starts(
    zone: ZoneInfo, window: str, first: datetime, until: datetime
) -> list[tuple[datetime, datetime]]:
    """Windows `[start, end)` from the one holding `first` to the last starting before `until`."""
    if window == "HOUR":
        return hour_windows(zone, first, until)
    return day_windows(zone, first, until)


def reference_usage_windows(
    catalog: Mapping[str, Any],
    subscription: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    feature_id: str,
    first: datetime,
    until: datetime,
    window: str,
) -> dict[str, Any]:
    """`GET /v1/customers/{id}/usage`: the feature's value per local hour or day window.

    Events count from the subscription's start date. SUM, COUNT and UNIQUE_COUNT of an empty
    window are 0; the other aggregations are None (null) there.
    """
    feature = next(f for f in catalog["features"] if f["id"] == feature_id)
    zone_name = subscription.get("timezone") or "UTC"
    zone = ZoneInfo(zone_name)
    start_date = parse_timestamp(subscription["start_date"])
    stored = deduplicated(events)
    items = []
    for start, end in window_starts(zone, window, first, until):
        counted = events_in(
            feature, stored, subscription["external_customer_id"], start, end, start_date
        )
        value = aggregate(feature, counted)
        if value is None and feature["aggregation"]["type"] in {"SUM", "COUNT", "UNIQUE_COUNT"}:
            value = Fraction(0)
        items.append(
            {"start": start, "end": end, "value": None if value is None else decimal_of(value)}
        )
    return {"feature_id": feature_id, "window": window, "timezone": zone_name, "items": items}
