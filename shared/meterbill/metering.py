"""Turning events into quantities: which features an event feeds, and by how much.

An event matches a feature when its name is the feature's event name and, for every filter,
the event carries the property with one of the allowed values (compared as canonical text, see
`values`). A missing property never matches. A matched event contributes:

* COUNT: 1.
* SUM, MAX, MIN, AVG, LATEST: the exact decimal value of the feature's field.
* UNIQUE_COUNT: the canonical text of the field, whatever its type.

A matched event without a usable value (no number for SUM and the others, no property at all for
UNIQUE_COUNT) is invalid and is rejected at ingest, never counted as zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext

from meterbill.counters import CounterState
from meterbill.models import AggregationType, Feature
from meterbill.values import PropertyValue, canonical_text, parse_decimal

__all__ = [
    "AVERAGE_PLACES",
    "ContributionError",
    "combine",
    "contribution",
    "matches",
    "missing_values",
    "quantity_of",
]

# An average is rarely a terminating decimal: it is kept to 12 places, half up, like unit prices.
AVERAGE_PLACES = 12


@dataclass(frozen=True)
class ContributionError:
    """Why a matching event cannot be counted for a feature."""

    feature: Feature
    property_name: str

    def sentence(self) -> str:
        kind = self.feature.aggregation.type
        need = "be a number (or numeric string)" if kind.needs_number else "be present"
        return (
            f"property {self.property_name!r} must {need} because the event matches feature "
            f"{self.feature.lookup_key!r} ({self.feature.id}), which aggregates it with {kind}"
        )


def matches(feature: Feature, event_name: str, properties: Mapping[str, PropertyValue]) -> bool:
    if feature.event_name != event_name:
        return False
    for prop, allowed in feature.filters.items():
        if prop not in properties:
            return False
        if canonical_text(properties[prop]) not in allowed:
            return False
    return True


def contribution(feature: Feature, properties: Mapping[str, PropertyValue]) -> Decimal | None:
    """The number a matching event brings (1 for COUNT and UNIQUE_COUNT); None if it carries
    no usable value."""
    kind = feature.aggregation.type
    if kind is AggregationType.COUNT:
        return Decimal(1)
    field = feature.aggregation.field
    if field is None or field not in properties:
        return None
    if kind is AggregationType.UNIQUE_COUNT:
        return Decimal(1)
    return parse_decimal(properties[field])


def missing_values(
    features: Iterable[Feature], event_name: str, properties: Mapping[str, PropertyValue]
) -> list[ContributionError]:
    """Every matching feature this event cannot be counted for (empty when the event is valid)."""
    errors = []
    for feature in features:
        if matches(feature, event_name, properties) and contribution(feature, properties) is None:
            errors.append(ContributionError(feature, feature.aggregation.field or ""))
    return errors


def quantity_of(feature: Feature, state: CounterState | None) -> Decimal:
    """A period's quantity from its counter; a period without events has quantity 0."""
    value = _value(feature.aggregation.type, state)
    return Decimal(0) if value is None else value


def combine(feature: Feature, states: Iterable[CounterState]) -> Decimal | None:
    """The value of a window made of several counters; None when an empty window has no value
    (MAX, MIN, AVG, LATEST), 0 for sums and counts."""
    kind = feature.aggregation.type
    parts = list(states)
    merged = CounterState(
        quantity=sum((p.quantity for p in parts), Decimal(0)),
        total=sum((p.total for p in parts), Decimal(0)),
        count=sum((p.count for p in parts), Decimal(0)),
        max=max((p.max for p in parts if p.max is not None), default=None),
        min=min((p.min for p in parts if p.min is not None), default=None),
        latest=max(
            ((p.latest_order, p.latest) for p in parts if p.latest_order is not None),
            default=(None, None),
        )[1],
    )
    return _value(kind, merged)


def _value(kind: AggregationType, state: CounterState | None) -> Decimal | None:
    if kind in (AggregationType.SUM, AggregationType.COUNT, AggregationType.UNIQUE_COUNT):
        return Decimal(0) if state is None else state.quantity
    if state is None:
        return None
    if kind is AggregationType.AVG:
        if state.count == 0:
            return None
        with localcontext() as context:
            context.prec = 80
            average = state.total / state.count
        return average.quantize(Decimal(1).scaleb(-AVERAGE_PLACES), rounding=ROUND_HALF_UP)
    if kind is AggregationType.MAX:
        return state.max
    if kind is AggregationType.MIN:
        return state.min
    return state.latest
