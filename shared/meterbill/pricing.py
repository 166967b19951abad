"""Prices: from a feature's quantity in a period to a line amount.

* PACKAGE: `packages(quantity / package_size) * amount`, the package count rounded `up` (default:
  5,000,001 tokens at 1,000,000 a package are 6 packages) or `down`.
* PER_UNIT: `quantity / per * amount`, no rounding of the quantity, for exact per-token billing.
* FLAT_FEE: `amount` once a period.

Every line amount is rounded once, to the currency's minor unit, half away from zero
(`money.round_line_amount`); invoice totals add rounded lines.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from meterbill.models import BillingModel, Price
from meterbill.money import round_line_amount

__all__ = ["line_amount", "package_count"]

# Unit amounts carry up to 12 places and quantities up to 38 digits; 60 digits keep every
# intermediate product exact before the single rounding to minor units.
_PRECISION = 60


def package_count(quantity: Decimal, package_size: Decimal, rounding: str) -> Decimal:
    mode = ROUND_CEILING if rounding == "up" else ROUND_FLOOR
    with localcontext() as context:
        context.prec = _PRECISION
        return (quantity / package_size).to_integral_value(rounding=mode)


def line_amount(price: Price, quantity: Decimal, currency: str) -> Decimal:
    """The rounded amount of one line item."""
    with localcontext() as context:
        context.prec = _PRECISION
        if price.billing_model is BillingModel.FLAT_FEE:
            raw = price.amount
        elif price.billing_model is BillingModel.PACKAGE:
            assert price.package_size is not None and price.rounding is not None
            raw = package_count(quantity, price.package_size, price.rounding) * price.amount
        else:
            per = price.per if price.per is not None else Decimal(1)
            raw = quantity * price.amount / per
        return round_line_amount(raw, currency)
