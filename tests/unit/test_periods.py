import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.periods import (
    BillingPeriod,
    Period,
    format_instant,
    parse_instant,
    period_containing,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def monthly(anchor: datetime, instant: datetime) -> Period | None:
    return period_containing(anchor, BillingPeriod.MONTHLY, 1, instant)


def test_monthly_period_anchored_on_january_31_ends_on_the_last_day_of_february():
    anchor = utc(2026, 1, 31)

    january = monthly(anchor, utc(2026, 2, 10))
    february = monthly(anchor, utc(2026, 3, 1))

    assert january == Period(start=anchor, end=utc(2026, 2, 28))
    assert february == Period(start=utc(2026, 2, 28), end=utc(2026, 3, 31))


def test_monthly_period_anchored_on_january_31_ends_on_february_29_in_a_leap_year():
    anchor = utc(2028, 1, 31)

    february = monthly(anchor, utc(2028, 3, 1))

    assert february == Period(start=utc(2028, 2, 29), end=utc(2028, 3, 31))


def test_monthly_period_recovers_the_anchor_day_after_a_short_month():
    anchor = utc(2026, 1, 31, 9, 30)

    period = monthly(anchor, utc(2026, 4, 15))

    assert period == Period(start=utc(2026, 3, 31, 9, 30), end=utc(2026, 4, 30, 9, 30))


def test_event_exactly_at_a_boundary_belongs_to_the_period_starting_there():
    anchor = utc(2026, 1, 1)

    period = monthly(anchor, utc(2026, 2, 1))

    assert period is not None
    assert period.start == utc(2026, 2, 1)


def test_event_just_before_a_boundary_belongs_to_the_period_ending_there():
    anchor = utc(2026, 1, 1)

    period = monthly(anchor, utc(2026, 2, 1) - timedelta(microseconds=1))

    assert period == Period(start=anchor, end=utc(2026, 2, 1))


def test_event_before_the_anchor_has_no_period():
    anchor = utc(2026, 1, 1)

    assert monthly(anchor, anchor - timedelta(microseconds=1)) is None


def test_quarterly_period_with_count_two_lasts_six_months():
    anchor = utc(2026, 1, 15)

    period = period_containing(anchor, BillingPeriod.QUARTERLY, 2, utc(2026, 8, 1))

    assert period == Period(start=utc(2026, 7, 15), end=utc(2027, 1, 15))


def test_parse_instant_without_offset_is_utc():
    assert parse_instant("2026-03-01T10:00:00") == utc(2026, 3, 1, 10)


def test_parse_instant_converts_an_offset_to_utc():
    parsed = parse_instant("2026-03-01T10:00:00+02:00")

    assert parsed == utc(2026, 3, 1, 8)
    assert parsed.utcoffset() == timedelta(0)


def test_parse_instant_reads_a_z_suffix_in_either_case():
    assert parse_instant("2026-03-01T10:00:00Z") == utc(2026, 3, 1, 10)
    assert parse_instant("2026-03-01t10:00:00z") == utc(2026, 3, 1, 10)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30"])
def test_parse_instant_rejects_invalid_text(text):
    with pytest.raises(ValueError):
        parse_instant(text)


def test_format_instant_writes_utc_with_z():
    assert format_instant(utc(2026, 3, 1)) == "2026-03-01T00:00:00Z"


def test_format_instant_converts_other_offsets_to_utc():
    instant = datetime(2026, 3, 1, 10, tzinfo=timezone(timedelta(hours=2)))

    assert format_instant(instant) == "2026-03-01T08:00:00Z"


def test_format_instant_keeps_microseconds_when_present():
    assert format_instant(utc(2026, 3, 1, 0, 0, 0, 250)) == "2026-03-01T00:00:00.000250Z"


any_instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
# Days 29 to 31 are where monthly periods clamp; pick them far more often than chance would.
month_ends = st.builds(
    lambda instant, day: instant.replace(
        day=min(day, calendar.monthrange(instant.year, instant.month)[1])
    ),
    any_instants,
    st.integers(min_value=28, max_value=31),
)
anchors = st.one_of(any_instants, month_ends)
elapsed = st.one_of(
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30 * 366)),
)


@settings(max_examples=300, deadline=None)
@given(
    anchors, elapsed, st.sampled_from(list(BillingPeriod)), st.integers(min_value=1, max_value=3)
)
def test_period_containing_returns_the_anchored_period_holding_the_instant(
    anchor, since_anchor, billing_period, count
):
    instant = anchor + since_anchor

    period = period_containing(anchor, billing_period, count, instant)

    assert period is not None
    assert period.contains(instant)
    assert period.start >= anchor
    following = period_containing(anchor, billing_period, count, period.end)
    assert following is not None
    assert following.start == period.end


@settings(max_examples=100, deadline=None)
@given(anchors, st.integers(min_value=0, max_value=60))
def test_monthly_period_starts_on_the_anchor_day_clamped_to_the_month(anchor, months):
    year, month = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + year, month + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    expected_start = anchor.replace(year=year, month=month, day=day)

    period = monthly(anchor, expected_start)

    assert period is not None
    assert period.start == expected_start
