"""Currencies and the one place amounts are rounded."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from iso4217 import Currency

__all__ = ["is_known_currency", "minor_units", "round_line_amount"]


@lru_cache(maxsize=512)
def minor_units(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 code (USD 2, JPY 0, KWD 3)."""
    exponent = Currency(currency.upper()).exponent
    # Funds and metals (XAU, XDR...) have no minor unit in the standard; bill them like cents.
    return 2 if exponent is None else int(exponent)


def is_known_currency(currency: str) -> bool:
    try:
        Currency(currency.upper())
    except ValueError:
        return False
    return True


def round_line_amount(amount: Decimal, currency: str) -> Decimal:
    """Round a line item's amount to the currency's minor unit, half away from zero.

    This is the only rounding applied to money: invoice totals are sums of rounded lines.
    """
    quantum = Decimal(1).scaleb(-minor_units(currency))
    return amount.quantize(quantum, rounding=ROUND_HALF_UP)
