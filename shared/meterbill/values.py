"""Exact numbers and comparable property values.

Event properties arrive as JSON strings, numbers or booleans. Two rules hold everywhere:

* A quantity is an exact `Decimal`. A numeric string (`"5000000"`) is the same quantity as the
  number; floats never appear because request bodies are parsed with `parse_float=Decimal`.
* Filters compare canonical text: numbers (and strings that read as numbers) are written in
  plain normalized form, so `200`, `"200"`, `200.0` and `"2E+2"` are all `"200"`; booleans are
  `"true"` and `"false"`; any other string is compared as it is, case and spaces included.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, InvalidOperation
from functools import lru_cache

__all__ = ["PropertyValue", "canonical_text", "parse_decimal", "plain"]

PropertyValue = str | int | Decimal | bool

_NUMERIC_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# DynamoDB numbers hold 38 significant digits within 1E-130 .. 9.9E+125.
_MAX_DIGITS = 38
_MAX_ADJUSTED_EXPONENT = 125
_MIN_ADJUSTED_EXPONENT = -130


def parse_decimal(value: object) -> Decimal | None:
    """The exact decimal a JSON number or numeric string stands for, or None if it is not one."""
    if isinstance(value, str | int | Decimal):
        # The same few property values recur across events and features: parse each once.
        return _parse_cached(type(value).__name__, value)
    return None


def canonical_text(value: PropertyValue) -> str:
    """The text a filter compares: see the module docstring."""
    return _canonical_cached(type(value).__name__, value)


@lru_cache(maxsize=8192)
def _parse_cached(kind: str, value: object) -> Decimal | None:
    return _parse(value)


@lru_cache(maxsize=8192)
def _canonical_cached(kind: str, value: PropertyValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    number = parse_decimal(value)
    if number is not None:
        return format(plain(number), "f")
    return str(value)


def _parse(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        # Only plain ASCII decimal notation is a number: Decimal() alone would also take
        # spaces, underscores ("1_000") and other scripts' digits, which are text here.
        if not _NUMERIC_TEXT.fullmatch(value):
            return None
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
    else:
        return None
    if not number.is_finite() or not _fits_dynamodb(number):
        return None
    return number


def plain(number: Decimal) -> Decimal:
    """The same value without exponent notation (moto's ADD cannot parse `1E+15`)."""
    if number.is_zero():
        return Decimal(0)
    text = format(_normalized(number), "f")
    return Decimal(text)


def _fits_dynamodb(number: Decimal) -> bool:
    if number.is_zero():
        return True
    digits = len(_normalized(number).as_tuple().digits)
    adjusted = number.adjusted()
    return digits <= _MAX_DIGITS and _MIN_ADJUSTED_EXPONENT <= adjusted <= _MAX_ADJUSTED_EXPONENT


def _normalized(number: Decimal) -> Decimal:
    # normalize() rounds to the context precision (28 digits by default); DynamoDB keeps 38.
    return number.normalize(Context(prec=len(number.as_tuple().digits)))
