import math
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.models import BillingModel, Price
from meterbill.money import minor_units, round_line_amount
from meterbill.pricing import line_amount

MILLION = Decimal(1_000_000)


def package(amount: str, size: Decimal = MILLION, rounding: Literal["up", "down"] = "up") -> Price:
    return Price(
        id="price_package",
        billing_model=BillingModel.PACKAGE,
        feature_id="feat_tokens",
        amount=Decimal(amount),
        package_size=size,
        rounding=rounding,
    )


def per_unit(amount: str, per: Decimal | None = None) -> Price:
    return Price(
        id="price_per_unit",
        billing_model=BillingModel.PER_UNIT,
        feature_id="feat_tokens",
        amount=Decimal(amount),
        per=per,
    )


def flat_fee(amount: str) -> Price:
    return Price(id="price_flat", billing_model=BillingModel.FLAT_FEE, amount=Decimal(amount))


def test_openai_o1_reference_invoice_totals_202_50():
    # o1 list prices per million tokens: input 15.00, output 60.00, cached input 7.50.
    lines = [
        (package("15.00"), Decimal(5_000_000)),
        (package("60.00"), Decimal(2_000_000)),
        (package("7.50"), Decimal(1_000_000)),
    ]

    amounts = [line_amount(price, quantity, "USD") for price, quantity in lines]

    assert amounts == [Decimal("75.00"), Decimal("120.00"), Decimal("7.50")]
    assert sum(amounts) == Decimal("202.50")


def test_package_rounding_up_bills_a_started_package_in_full():
    amount = line_amount(package("15.00", rounding="up"), Decimal(5_000_001), "USD")

    assert amount == Decimal("90.00")


def test_package_rounding_down_ignores_a_started_package():
    amount = line_amount(package("15.00", rounding="down"), Decimal(5_000_001), "USD")

    assert amount == Decimal("75.00")


@pytest.mark.parametrize("rounding", ["up", "down"])
def test_package_quantity_of_exactly_one_package_bills_one_package(rounding):
    amount = line_amount(package("15.00", rounding=rounding), MILLION, "USD")

    assert amount == Decimal("15.00")


def test_package_quantity_of_zero_bills_nothing():
    amount = line_amount(package("15.00"), Decimal(0), "USD")

    assert str(amount) == "0.00"


def test_per_unit_price_per_token_rounds_to_cents():
    amount = line_amount(per_unit("0.000015"), Decimal(1_234_567), "USD")

    # 1,234,567 x 0.000015 = 18.518505
    assert amount == Decimal("18.52")


def test_per_unit_price_divides_by_per():
    amount = line_amount(per_unit("0.015", per=Decimal(1000)), Decimal(1_234_567), "USD")

    assert amount == Decimal("18.52")


def test_per_unit_rounds_half_up_at_the_minor_unit():
    # 0.002345 per 1000 x 1,000,000 = 2.345 exactly: a tie, which half-even would round down.
    amount = line_amount(per_unit("0.002345", per=Decimal(1000)), Decimal(1_000_000), "USD")

    assert amount == Decimal("2.35")


def test_flat_fee_ignores_the_quantity():
    price = flat_fee("49.99")

    assert line_amount(price, Decimal(1), "USD") == Decimal("49.99")
    assert line_amount(price, Decimal(5_000_000), "USD") == Decimal("49.99")


@pytest.mark.parametrize(("currency", "units"), [("USD", 2), ("eur", 2), ("JPY", 0), ("KWD", 3)])
def test_minor_units_follow_iso_4217(currency, units):
    assert minor_units(currency) == units


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("2.345", "USD", "2.35"),
        ("2.3449999", "USD", "2.34"),
        ("-2.345", "USD", "-2.35"),
        ("1234.5", "JPY", "1235"),
        ("1234.4", "JPY", "1234"),
        ("1.2345", "KWD", "1.235"),
        ("7.5", "KWD", "7.500"),
    ],
)
def test_round_line_amount_rounds_half_away_from_zero_at_the_minor_unit(amount, currency, expected):
    rounded = round_line_amount(Decimal(amount), currency)

    assert str(rounded) == expected


def test_line_amount_in_yen_has_no_minor_unit():
    amount = line_amount(per_unit("0.015"), Decimal(1_234_567), "JPY")

    # 18,518.505 yen
    assert str(amount) == "18519"


CURRENCIES = ["USD", "EUR", "JPY", "KWD", "BHD"]


def decimal(units: int, places: int) -> Decimal:
    """`units` x 10^-places, built from text so no context precision can round it."""
    return Decimal(f"{units}E-{places}")


# Token counts up to a trillion, sometimes fractional (GPU hours, gigabytes).
quantities = st.builds(
    decimal,
    st.integers(min_value=0, max_value=10**12),
    st.sampled_from([0, 0, 0, 3, 6]),
)
# Unit amounts with up to 12 decimal places, as Stripe allows.
amounts = st.builds(
    decimal,
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=12),
)
package_sizes = st.one_of(
    st.sampled_from([Decimal(1), Decimal(1000), MILLION]),
    st.builds(
        decimal,
        st.integers(min_value=1, max_value=10**7),
        st.sampled_from([0, 0, 2]),
    ),
)
pers = st.sampled_from([None, Decimal(1), Decimal(1000), MILLION, Decimal("0.5")])


def scaled(number: Decimal) -> tuple[int, int]:
    """`number` as an integer and a power of ten: 1.25 -> (125, 2)."""
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int) and sign == 0
    places = max(0, -exponent)
    return int("".join(map(str, digits))) * 10 ** max(0, exponent), places


def half_up(numerator: int, denominator: int) -> int:
    """Round a non-negative fraction to the nearest integer, ties up."""
    return (2 * numerator + denominator) // (2 * denominator)


@settings(max_examples=200)
@given(
    quantities, package_sizes, amounts, st.sampled_from(["up", "down"]), st.sampled_from(CURRENCIES)
)
def test_package_line_amount_is_the_package_count_times_the_amount(
    quantity, size, amount, rounding, currency
):
    q, q_places = scaled(quantity)
    s, s_places = scaled(size)
    a, a_places = scaled(amount)
    # quantity / size = (q * 10^s_places) / (s * 10^q_places)
    numerator, denominator = q * 10**s_places, s * 10**q_places
    packages = -(-numerator // denominator) if rounding == "up" else numerator // denominator
    units = minor_units(currency)
    expected = decimal(half_up(packages * a * 10**units, 10**a_places), units)

    result = line_amount(package(str(amount), size, rounding), quantity, currency)

    assert result == expected


@settings(max_examples=200)
@given(quantities, amounts, pers, st.sampled_from(CURRENCIES))
def test_per_unit_line_amount_is_quantity_times_amount_over_per_rounded_half_up(
    quantity, amount, per, currency
):
    units = minor_units(currency)
    exact = Fraction(quantity) * Fraction(amount) / Fraction(per or 1) * 10**units
    expected = decimal(math.floor(exact + Fraction(1, 2)), units)

    result = line_amount(per_unit(str(amount), per), quantity, currency)

    assert result == expected


@settings(max_examples=200)
@given(
    st.sampled_from([package, per_unit, flat_fee]), quantities, amounts, st.sampled_from(CURRENCIES)
)
def test_line_amount_always_has_the_currency_minor_unit_exponent(
    make_price, quantity, amount, currency
):
    result = line_amount(make_price(str(amount)), quantity, currency)

    assert result.as_tuple().exponent == -minor_units(currency)
