"""Billing periods anchored at a subscription's start.

Period k starts at `anchor + k * length`, always computed from the anchor rather than from the
previous period, so month-end anchors clamp and recover: Jan 31 -> Feb 28 (or 29) -> Mar 31.
A period is the half-open interval [start, end): an event exactly at a boundary belongs to the
period that starts there. All instants are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from dateutil.relativedelta import relativedelta

__all__ = ["BillingPeriod", "Period", "format_instant", "parse_instant", "period_containing"]


class BillingPeriod(StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    ANNUAL = "ANNUAL"


_LENGTH = {
    BillingPeriod.DAILY: relativedelta(days=1),
    BillingPeriod.WEEKLY: relativedelta(weeks=1),
    BillingPeriod.MONTHLY: relativedelta(months=1),
    BillingPeriod.QUARTERLY: relativedelta(months=3),
    BillingPeriod.ANNUAL: relativedelta(years=1),
}
_APPROXIMATE_SECONDS = {
    BillingPeriod.DAILY: 86_400,
    BillingPeriod.WEEKLY: 7 * 86_400,
    BillingPeriod.MONTHLY: 2_629_746,
    BillingPeriod.QUARTERLY: 3 * 2_629_746,
    BillingPeriod.ANNUAL: 31_556_952,
}


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def period_containing(
    anchor: datetime, billing_period: BillingPeriod, count: int, instant: datetime
) -> Period | None:
    """The period holding `instant`, or None when it falls before the anchor."""
    if instant < anchor:
        return None

    index = _estimate_index(anchor, billing_period, count, instant)
    while _period_start(anchor, billing_period, count, index) > instant:
        index -= 1
    while _period_start(anchor, billing_period, count, index + 1) <= instant:
        index += 1

    return Period(
        start=_period_start(anchor, billing_period, count, index),
        end=_period_start(anchor, billing_period, count, index + 1),
    )


def _period_start(
    anchor: datetime, billing_period: BillingPeriod, count: int, index: int
) -> datetime:
    start: datetime = anchor + _LENGTH[billing_period] * (index * count)
    return start


def _estimate_index(
    anchor: datetime, billing_period: BillingPeriod, count: int, instant: datetime
) -> int:
    elapsed = (instant - anchor).total_seconds()
    return max(0, int(elapsed // (_APPROXIMATE_SECONDS[billing_period] * count)))


def parse_instant(text: str) -> datetime:
    """Parse RFC 3339; a timestamp without an offset is UTC. Raises ValueError when invalid."""
    parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_instant(instant: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, microseconds only when present."""
    text = instant.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")
