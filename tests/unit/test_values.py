from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.values import canonical_text, parse_decimal, plain

# Built from text so no Decimal context rounds them: every digit DynamoDB can hold (38) and
# exponents well inside its range.
dynamodb_numbers = st.builds(
    lambda coefficient, exponent: Decimal(f"{coefficient}E{exponent}"),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.integers(min_value=-40, max_value=40),
)


def test_parse_decimal_reads_numeric_string_as_the_same_number():
    assert parse_decimal("5000000") == 5000000
    assert parse_decimal("0.000015") == Decimal("0.000015")


def test_parse_decimal_keeps_int_and_decimal_exact():
    assert parse_decimal(1_000_000_000_000) == Decimal("1000000000000")
    assert parse_decimal(Decimal("18.518505")) == Decimal("18.518505")


@pytest.mark.parametrize("value", [True, False, "gpt-4o", "", None, 1.5, ["1"]])
def test_parse_decimal_returns_none_for_non_numbers(value):
    assert parse_decimal(value) is None


@pytest.mark.parametrize(
    "value", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", Decimal("NaN")]
)
def test_parse_decimal_rejects_nan_and_infinity(value):
    assert parse_decimal(value) is None


def test_parse_decimal_accepts_38_significant_digits():
    thirty_eight = "12345678901234567890123456789012345678"

    assert parse_decimal(thirty_eight) == int(thirty_eight)


@pytest.mark.parametrize(
    "value",
    [
        "123456789012345678901234567890123456789",
        "1234567890123456789012345678901234567890",
        10**39 + 1,
        "0.123456789012345678901234567890123456789",
    ],
)
def test_parse_decimal_rejects_more_than_38_significant_digits(value):
    assert parse_decimal(value) is None


@pytest.mark.parametrize("value", ["1E+126", "1E-131"])
def test_parse_decimal_rejects_exponents_outside_dynamodb_range(value):
    assert parse_decimal(value) is None


def test_parse_decimal_accepts_trailing_zeros_beyond_38_digits():
    # Trailing zeros are exponent, not significant digits: DynamoDB stores 1E+50 as it is.
    assert parse_decimal("1" + "0" * 50) == 10**50


@pytest.mark.parametrize("value", [200, "200", Decimal("200.0"), "2E+2", "200.000", "+200"])
def test_canonical_text_writes_every_form_of_200_as_200(value):
    assert canonical_text(value) == "200"


def test_canonical_text_writes_booleans_in_lowercase():
    assert canonical_text(True) == "true"
    assert canonical_text(False) == "false"


def test_canonical_text_writes_large_numbers_without_exponent():
    assert canonical_text(Decimal("1E+15")) == "1000000000000000"
    assert canonical_text("1.5E-7") == "0.00000015"


def test_canonical_text_keeps_other_strings_as_they_are():
    assert canonical_text("GPT-4o ") == "GPT-4o "
    assert canonical_text("True") == "True"


def test_canonical_text_writes_negative_zero_as_zero():
    assert canonical_text(Decimal("-0.00")) == "0"


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (Decimal("1E+15"), "1000000000000000"),
        (Decimal("2.50E+3"), "2500"),
        (Decimal("5000000.000"), "5000000"),
        (Decimal("0E+7"), "0"),
    ],
)
def test_plain_writes_the_value_without_exponent(number, expected):
    assert str(plain(number)) == expected


def test_plain_keeps_all_38_digits():
    number = Decimal("12345678901234567890123456789012345678")

    assert plain(number) == number


@settings(max_examples=300)
@given(dynamodb_numbers)
def test_canonical_text_of_a_number_equals_that_of_its_string_and_reads_back(number):
    text = canonical_text(number)

    assert text == canonical_text(str(number))
    assert Decimal(text) == number


@settings(max_examples=300)
@given(dynamodb_numbers)
def test_plain_keeps_the_value_and_drops_the_exponent(number):
    result = plain(number)

    assert result == number
    # Decimal's str() writes anything below 1E-6 in scientific notation, whatever its exponent,
    # so the promise of plain text holds from there up.
    if number.is_zero() or number.adjusted() >= -6:
        assert "E" not in str(result)


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662", " 1", "1 ", "1,5", "0x10", "NaN"])
def test_only_plain_ascii_decimal_notation_reads_as_a_number(text: str) -> None:
    assert parse_decimal(text) is None
    assert canonical_text(text) == text


def test_event_property_strings_keep_their_spaces() -> None:
    from meterbill.models import EventRequest

    event = EventRequest.model_validate(
        {"event_name": "e", "external_customer_id": "c", "properties": {"model": " a "}}
    )

    assert event.properties["model"] == " a "
