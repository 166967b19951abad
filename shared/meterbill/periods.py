"""Billing periods, computed in the customer's local wall time.

* **anniversary** (default): period k starts at `local(start) + k * length`, always computed from
  the anchor rather than from the previous period, so month ends clamp and recover:
  Jan 31 -> Feb 28 (or 29) -> Mar 31.
* **calendar**: periods start at the local calendar boundaries (day, ISO week starting Monday,
  month, quarter, year) counted every `count` units from the boundary at or before the start;
  the first period runs from the start to the first boundary after it.

A wall time that does not exist (a DST gap) moves forward to the first instant after the gap;
an ambiguous one (the repeated hour) is its first occurrence. A period is the half-open interval
[start, end), and each end is the next start, so a DST change never loses or doubles an hour.
An event exactly at a boundary belongs to the period that starts there. Instants are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

__all__ = [
    "BillingPeriod",
    "Cycle",
    "Period",
    "format_instant",
    "local_wall_to_utc",
    "parse_instant",
    "period_containing",
]


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


class Cycle(StrEnum):
    ANNIVERSARY = "anniversary"
    CALENDAR = "calendar"


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def period_containing(
    anchor: datetime,
    billing_period: BillingPeriod,
    count: int,
    instant: datetime,
    timezone: str = "UTC",
    cycle: Cycle | str = Cycle.ANNIVERSARY,
) -> Period | None:
    """The period holding `instant`, or None when it falls before the anchor."""
    if instant < anchor:
        return None
    boundaries = _Boundaries(anchor, billing_period, count, timezone, Cycle(cycle))

    index = _estimate_index(anchor, billing_period, count, instant)
    while index > 0 and boundaries.at(index) > instant:
        index -= 1
    while boundaries.at(index + 1) <= instant:
        index += 1
    return Period(start=boundaries.at(index), end=boundaries.at(index + 1))


class _Boundaries:
    """Period starts: index 0 is the anchor itself, index k the k-th boundary after it."""

    def __init__(
        self, anchor: datetime, period: BillingPeriod, count: int, timezone: str, cycle: Cycle
    ) -> None:
        self._anchor = anchor
        self._zone = _zone(timezone)
        self._step = _LENGTH[period] * count
        wall = anchor.astimezone(self._zone).replace(tzinfo=None)
        self._base = _calendar_floor(wall, period) if cycle is Cycle.CALENDAR else wall

    def at(self, index: int) -> datetime:
        if index == 0:
            return self._anchor
        wall: datetime = self._base + self._step * index
        return local_wall_to_utc(wall, self._zone)


def _calendar_floor(wall: datetime, period: BillingPeriod) -> datetime:
    day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is BillingPeriod.DAILY:
        return day
    if period is BillingPeriod.WEEKLY:
        return day - timedelta(days=day.weekday())
    if period is BillingPeriod.MONTHLY:
        return day.replace(day=1)
    if period is BillingPeriod.QUARTERLY:
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def local_wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time (naive): gaps move forward, repeats take the first."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: the answer is the transition, the earliest whole second whose local time is at
    # or after `wall`. It lies between the two readings of the wall time; bisect over seconds.
    low = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(first.timestamp()) + 1
    while high - low > 1:
        middle = (low + high) // 2
        local = datetime.fromtimestamp(middle, UTC).astimezone(zone).replace(tzinfo=None)
        if local >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


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
