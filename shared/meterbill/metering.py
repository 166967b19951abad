"""Turning events into quantities: which features an event feeds, and by how much.

An event matches a feature when its name is the feature's event name and, for every filter,
the event carries the property with one of the allowed values (compared as canonical text, see
`values`). A missing property never matches. A matched event contributes:

* COUNT: 1.
* SUM: the exact decimal value of the feature's field. A matched event without a numeric value
  there is invalid and is rejected at ingest, never counted as zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from meterbill.models import AggregationType, Feature
from meterbill.values import PropertyValue, canonical_text, parse_decimal

__all__ = ["ContributionError", "contribution", "matches", "missing_values"]


@dataclass(frozen=True)
class ContributionError:
    """Why a matching event cannot be counted for a feature."""

    feature: Feature
    property_name: str

    def sentence(self) -> str:
        return (
            f"property {self.property_name!r} must be a number (or numeric string) because the "
            f"event matches feature {self.feature.lookup_key!r} ({self.feature.id}), which sums it"
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
    """What a matching event adds to the feature's quantity; None if it carries no usable value."""
    if feature.aggregation.type is AggregationType.COUNT:
        return Decimal(1)
    field = feature.aggregation.field
    if field is None or field not in properties:
        return None
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
