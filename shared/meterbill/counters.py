"""What a usage counter holds, as the domain reads it (the storage layout is `storage`'s)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["CounterState"]


@dataclass(frozen=True)
class CounterState:
    """A counter as stored: sums (`quantity`, `total`, `count`), extremes and the latest value."""

    quantity: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    count: Decimal = Decimal(0)
    max: Decimal | None = None
    min: Decimal | None = None
    latest: Decimal | None = None
    latest_order: str | None = None
