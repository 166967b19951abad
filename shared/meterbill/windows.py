"""Time windows for usage charts, in the customer's time zone.

* A 15-minute bucket is `[m, m + 15 min)` for a UTC quarter-hour mark `m`. Every time zone's
  offset is a multiple of 15 minutes, so buckets nest inside local hours and days.
* A local hour runs from one instant where the local clock shows `hh:00:00` to the next: usually
  60 minutes; around a DST change the repeated hour is its own window, and in zones that shift by
  30 minutes an hour can last 30 or 90 minutes.
* A local day runs from local midnight to the next (23 or 25 hours across DST); a midnight that
  does not exist starts at the first instant after the gap, as period boundaries do.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from meterbill.periods import local_wall_to_utc

__all__ = ["BUCKET", "Window", "bucket_start", "window_bounds", "windows_between"]

BUCKET = timedelta(minutes=15)
# The longest local hour (a 30-minute shift back) spans six buckets; search a little further.
_MAX_MARKS = 12


class Window(StrEnum):
    HOUR = "HOUR"
    DAY = "DAY"


def bucket_start(instant: datetime) -> datetime:
    floored = instant.astimezone(UTC).replace(second=0, microsecond=0)
    return floored - timedelta(minutes=floored.minute % 15)


def window_bounds(window: Window, instant: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The [start, end) of the local hour or day holding `instant`."""
    if window is Window.DAY:
        local_day = instant.astimezone(zone).date()
        start = _midnight(local_day, zone)
        end = _midnight(local_day + timedelta(days=1), zone)
        if instant < start:  # inside a gap that swallowed midnight: still the previous day
            return _midnight(local_day - timedelta(days=1), zone), start
        return start, end

    mark = bucket_start(instant)
    for _ in range(_MAX_MARKS):
        if _on_the_hour(mark, zone):
            break
        mark -= BUCKET
    end = mark + BUCKET
    for _ in range(_MAX_MARKS):
        if _on_the_hour(end, zone):
            break
        end += BUCKET
    return mark, end


def windows_between(
    window: Window, start: datetime, end: datetime, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Consecutive windows from the one holding `start` to the last one starting before `end`."""
    windows = []
    current = window_bounds(window, start, zone)
    while current[0] < end:
        windows.append(current)
        current = window_bounds(window, current[1], zone)
    return windows


def _on_the_hour(instant: datetime, zone: ZoneInfo) -> bool:
    local = instant.astimezone(zone)
    return local.minute == 0 and local.second == 0


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return local_wall_to_utc(datetime(day.year, day.month, day.day), zone)
