"""Tiered prices at their boundaries, allowances and minimums; local hour and day windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from meterbill.models import Price
from meterbill.pricing import line_amount
from meterbill.windows import Window, window_bounds, windows_between

TIERS = [
    {"up_to": "1000000", "unit_amount": "2.00", "per": "1000000"},
    {"up_to": None, "unit_amount": "1.00", "per": "1000000", "flat_amount": "5.00"},
]


def _tiered(mode: str, **extra: object) -> Price:
    return Price.model_validate(
        {
            "id": "price_t",
            "billing_model": "TIERED",
            "feature_id": "f",
            "tier_mode": mode,
            "tiers": TIERS,
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("mode", "quantity", "amount"),
    [
        ("VOLUME", "1000000", "2.00"),  # exactly the first tier's up_to: still the first tier
        ("VOLUME", "1000001", "6.00"),  # the whole quantity moves to tier 2: 1.000001 + 5
        ("GRADUATED", "1000000", "2.00"),
        ("GRADUATED", "1000001", "7.00"),  # 2.00 + 0.000001 + 5.00 flat for reaching tier 2
        ("GRADUATED", "0", "0.00"),
        ("VOLUME", "-5", "0.00"),  # corrections below zero bill nothing
    ],
)
def test_tier_boundaries(mode: str, quantity: str, amount: str) -> None:
    assert line_amount(_tiered(mode), Decimal(quantity), "USD") == Decimal(amount)


def test_included_quantity_comes_off_before_tiers() -> None:
    price = _tiered("GRADUATED", included_quantity="1000000")

    assert line_amount(price, Decimal(1_000_000), "USD") == Decimal("0.00")
    assert line_amount(price, Decimal(2_000_000), "USD") == Decimal("2.00")


def test_minimum_amount_lifts_a_small_line() -> None:
    price = Price.model_validate(
        {
            "id": "p",
            "billing_model": "PER_UNIT",
            "feature_id": "f",
            "amount": "0.000015",
            "minimum_amount": "10.00",
        }
    )

    assert line_amount(price, Decimal(1000), "USD") == Decimal("10.00")
    assert line_amount(price, Decimal(1_000_000), "USD") == Decimal("15.00")


def test_a_repeated_local_hour_is_its_own_window() -> None:
    new_york = ZoneInfo("America/New_York")
    # 2026-11-01: 01:00-02:00 happens twice, at 05:00Z (EDT) and 06:00Z (EST).
    first = window_bounds(Window.HOUR, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), new_york)
    second = window_bounds(Window.HOUR, datetime(2026, 11, 1, 6, 30, tzinfo=UTC), new_york)

    assert first == (datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC))
    assert second == (datetime(2026, 11, 1, 6, tzinfo=UTC), datetime(2026, 11, 1, 7, tzinfo=UTC))


def test_days_last_23_or_25_hours_across_dst() -> None:
    london = ZoneInfo("Europe/London")
    spring = window_bounds(Window.DAY, datetime(2026, 3, 29, 12, tzinfo=UTC), london)
    autumn = window_bounds(Window.DAY, datetime(2026, 10, 25, 12, tzinfo=UTC), london)

    assert spring[1] - spring[0] == timedelta(hours=23)
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_a_half_hour_dst_shift_makes_a_ninety_minute_hour() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    # 2026-04-05 02:00 (+11:00) becomes 01:30 (+10:30) at 15:00Z.
    start, end = window_bounds(Window.HOUR, datetime(2026, 4, 4, 14, 45, tzinfo=UTC), lord_howe)

    assert end - start == timedelta(minutes=90)


def test_windows_between_are_contiguous_and_cover_the_range() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")
    start = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    windows = windows_between(Window.HOUR, start, start + timedelta(hours=5), kolkata)

    assert windows[0][0] <= start < windows[0][1]
    assert all(a[1] == b[0] for a, b in pairwise(windows))
    assert windows[-1][0] < start + timedelta(hours=5)
