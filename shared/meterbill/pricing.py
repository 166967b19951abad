"""Prices: from a feature's quantity in a period to a line amount.

The billable quantity is `max(0, quantity - included_quantity)`: a free allowance comes off first,
and a period whose corrections leave it below zero bills nothing. Then:

* PACKAGE: `packages(billable / package_size) * amount`, the package count rounded `up`
  (default: 5,000,001 tokens at 1,000,000 a package are 6 packages) or `down`.
* PER_UNIT: `billable / per * amount`, no rounding of the quantity, for exact per-token billing.
* TIERED, VOLUME: the whole billable quantity at the first tier whose `up_to` (inclusive) holds
  it: `billable / per * unit_amount + flat_amount`.
* TIERED, GRADUATED: each slice at its own tier: slice i is the part of the billable quantity
  above tier i-1's `up_to` and at most tier i's, priced `slice / per * unit_amount + flat_amount`.
  A tier no slice reaches costs nothing, so a billable quantity of zero costs zero.
* FLAT_FEE: `amount` once a period.

A usage line is then at least its `minimum_amount`. Every line amount is rounded once, to the
currency's minor unit, half away from zero (`money.round_line_amount`); totals add rounded lines.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext

from meterbill.models import BillingModel, Price, Tier, TierMode
from meterbill.money import round_line_amount

__all__ = ["billable_quantity", "line_amount", "package_count", "tiered_amount"]

# Unit amounts carry up to 12 places and quantities up to 38 digits; 80 digits keep every
# intermediate product exact before the single rounding to minor units.
_PRECISION = 80


def billable_quantity(price: Price, quantity: Decimal) -> Decimal:
    return max(Decimal(0), quantity - price.included_quantity)


def package_count(quantity: Decimal, package_size: Decimal, rounding: str) -> Decimal:
    mode = ROUND_CEILING if rounding == "up" else ROUND_FLOOR
    with localcontext() as context:
        context.prec = _PRECISION
        return (quantity / package_size).to_integral_value(rounding=mode)


def tiered_amount(tiers: list[Tier], mode: TierMode, billable: Decimal) -> Decimal:
    """The unrounded amount of a tiered price for a billable quantity."""
    if billable <= 0:
        return Decimal(0)
    with localcontext() as context:
        context.prec = _PRECISION
        if mode is TierMode.VOLUME:
            tier = next(t for t in tiers if t.up_to is None or billable <= t.up_to)
            return billable / tier.per * tier.unit_amount + tier.flat_amount

        amount = Decimal(0)
        floor = Decimal(0)
        for tier in tiers:
            ceiling = billable if tier.up_to is None else min(billable, tier.up_to)
            if ceiling <= floor:
                break
            amount += (ceiling - floor) / tier.per * tier.unit_amount + tier.flat_amount
            floor = ceiling
        return amount


def line_amount(price: Price, quantity: Decimal, currency: str) -> Decimal:
    """The rounded amount of one line item."""
    with localcontext() as context:
        context.prec = _PRECISION
        raw = _unrounded(price, quantity)
        if price.minimum_amount is not None and price.billing_model is not BillingModel.FLAT_FEE:
            raw = max(raw, price.minimum_amount)
        return round_line_amount(raw, currency)


def _unrounded(price: Price, quantity: Decimal) -> Decimal:
    if price.billing_model is BillingModel.FLAT_FEE:
        assert price.amount is not None
        return price.amount
    billable = billable_quantity(price, quantity)
    if price.billing_model is BillingModel.PACKAGE:
        assert price.package_size is not None and price.rounding is not None
        assert price.amount is not None
        return package_count(billable, price.package_size, price.rounding) * price.amount
    if price.billing_model is BillingModel.TIERED:
        assert price.tiers is not None and price.tier_mode is not None
        return tiered_amount(price.tiers, price.tier_mode, billable)
    assert price.amount is not None
    per = price.per if price.per is not None else Decimal(1)
    return billable * price.amount / per
