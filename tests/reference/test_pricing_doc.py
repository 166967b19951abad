"""Every worked example of docs/pricing.md, recomputed: by the reference model, and through the
product's HTTP API where the product has the feature.

The doc's examples are fenced blocks tagged `yaml pricing-check`, of three kinds:

* `aggregation`: a feature's aggregation (and filters) over events, and the quantity expected;
* `price` / `invoice`: a price (or several lines) at given quantities, the amounts expected;
* `periods`: a plan's period, count and cycle in a time zone, the first periods expected.

YAML floats are read as exact Decimals, so `200.0` in the doc is the JSON number `200.0`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
import yaml

from meterbill.local.runtime import LocalRuntime
from tests.conftest import PROJECT_ROOT
from tests.reference.harness import Api, new_tenant
from tests.reference.model import (
    decimal_of,
    line_amount,
    matches,
    parse_timestamp,
    period_bounds,
    period_containing,
    quantity_of,
)

DOC = PROJECT_ROOT / "docs" / "pricing.md"
_BLOCK = re.compile(r"^```yaml pricing-check\n(.*?)^```", re.MULTILINE | re.DOTALL)


class _ExactLoader(yaml.SafeLoader):
    """YAML with floats read as Decimal: the doc's numbers are exact."""


_ExactLoader.add_constructor(
    "tag:yaml.org,2002:float",
    lambda loader, node: Decimal(loader.construct_scalar(node)),  # type: ignore[arg-type]
)


def doc_checks() -> list[dict[str, Any]]:
    """The doc's blocks, read as one YAML list so that a block may reuse an earlier one's
    anchors (`events: *stream`)."""
    blocks = _BLOCK.findall(DOC.read_text())
    items = ["-\n" + "\n".join("  " + line for line in block.splitlines()) for block in blocks]
    checks: list[dict[str, Any]] = yaml.load("\n".join(items), Loader=_ExactLoader)
    assert len(checks) == len(blocks)
    for index, check in enumerate(checks):
        check["number"] = index
    return checks


CHECKS = doc_checks()


def _of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [check for check in CHECKS if check["check"] in kinds]


def _id(check: dict[str, Any]) -> str:
    detail = check.get("aggregation", {}).get("type") or check.get("price", {}).get(
        "billing_model", ""
    )
    return f"{check['number']}-{check['check']}-{detail or check.get('billing_period', '')}"


def test_the_doc_has_worked_examples_of_every_kind() -> None:
    kinds = {check["check"] for check in CHECKS}
    aggregations = {c["aggregation"]["type"] for c in _of_kind("aggregation")}
    models = {c["price"]["billing_model"] for c in _of_kind("price")}

    assert kinds == {"aggregation", "price", "invoice", "periods"}
    assert aggregations == {"SUM", "COUNT", "MAX", "MIN", "AVG", "UNIQUE_COUNT", "LATEST"}
    assert models == {"PACKAGE", "PER_UNIT", "FLAT_FEE", "TIERED"}


# --- the reference model ----------------------------------------------------------------------


def _events(check: dict[str, Any], base: datetime, customer: str) -> list[dict[str, Any]]:
    """The check's events, `minute` minutes after `base`, in the order the doc lists them.

    Event ids are deduplicated per tenant, so each check's ids get the check's number in front
    (the same prefix for all, so LATEST's ties still go the doc's way)."""
    return [
        {
            "event_id": f"check{check['number']}-{item['id']}",
            "event_name": f"doc.check{check['number']}",
            "external_customer_id": customer,
            "timestamp": (base + timedelta(minutes=item["minute"])).isoformat(),
            "properties": item.get("properties", {}),
        }
        for item in check["events"]
    ]


def _feature(check: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"doc-{check['number']}",
        "name": f"Doc check {check['number']}",
        "lookup_key": f"doc-check-{check['number']}",
        "event_name": f"doc.check{check['number']}",
        "aggregation": check["aggregation"],
        "filters": check.get("filters", {}),
    }


def _reference_quantity(check: dict[str, Any]) -> Decimal:
    feature = _feature(check)
    seen: set[str] = set()
    counted = []
    for event in _events(check, datetime(2026, 1, 1, tzinfo=UTC), "doc"):
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            counted.append(event)
    return decimal_of(quantity_of(feature, [e for e in counted if matches(feature, e)]))


def _price_lines(check: dict[str, Any]) -> list[tuple[dict[str, Any], Decimal, Decimal]]:
    """(price, quantity, amount) of every line a price or invoice check states."""
    if check["check"] == "price":
        return [
            (check["price"], Decimal(x["quantity"]), Decimal(x["amount"])) for x in check["lines"]
        ]
    return [(x["price"], Decimal(x["quantity"]), Decimal(x["amount"])) for x in check["lines"]]


@pytest.mark.parametrize("check", _of_kind("aggregation"), ids=_id)
def test_aggregation_examples_match_the_reference_model(check: dict[str, Any]) -> None:
    assert _reference_quantity(check) == Decimal(check["quantity"])


@pytest.mark.parametrize("check", _of_kind("price", "invoice"), ids=_id)
def test_price_examples_match_the_reference_model(check: dict[str, Any]) -> None:
    amounts = []
    for price, quantity, amount in _price_lines(check):
        computed = line_amount(price, Fraction(quantity), check["currency"])
        assert (quantity, computed) == (quantity, amount)
        # The doc writes every amount with the currency's minor unit, as the API does.
        assert computed.as_tuple().exponent == amount.as_tuple().exponent
        amounts.append(computed)
    if "total" in check:
        assert sum(amounts, Decimal(0)) == Decimal(check["total"])


@pytest.mark.parametrize("check", _of_kind("periods"), ids=_id)
def test_period_examples_match_the_reference_model(check: dict[str, Any]) -> None:
    subscription = {"start_date": check["start_date"], "timezone": check["timezone"]}
    computed = [period_bounds(check, subscription, k) for k in range(len(check["periods"]))]

    stated = [(parse_timestamp(start), parse_timestamp(end)) for start, end in check["periods"]]
    assert [(p.start, p.end) for p in computed] == stated


def _tables(header: str) -> list[list[list[str]]]:
    """The body rows (lists of cell texts) of every markdown table with this header line."""
    tables = []
    lines = DOC.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() != header:
            continue
        rows = []
        for row in lines[index + 2 :]:
            if not row.startswith("|"):
                break
            rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
        tables.append(rows)
    return tables


def _bold_figure(cell: str) -> str:
    """The last bold number of a cell: `1.5000015 = **1.50**` -> "1.50"."""
    figures = re.findall(r"\*\*([-0-9.,]+)\*\*", cell)
    assert figures, cell
    return figures[-1].replace(",", "")


def test_tier_tables_match_the_reference_model() -> None:
    tier_sets: list[Any] = []
    for check in _of_kind("price"):
        price = check["price"]
        if price.get("tier_mode") == "VOLUME" and price["tiers"] not in tier_sets:
            tier_sets.append(price["tiers"])
    tables = _tables("| tokens | VOLUME | GRADUATED |")
    assert len(tables) == len(tier_sets) == 2

    for tiers, rows in zip(tier_sets, tables, strict=True):
        for tokens, volume, graduated in rows:
            quantity = Fraction(tokens.replace(",", ""))
            for mode, cell in (("VOLUME", volume), ("GRADUATED", graduated)):
                price = {"billing_model": "TIERED", "tier_mode": mode, "tiers": tiers}
                assert str(line_amount(price, quantity, "USD")) == _bold_figure(cell), (
                    mode,
                    tokens,
                )


def test_aggregation_table_matches_the_reference_model() -> None:
    stream = next(c for c in _of_kind("aggregation") if c["aggregation"]["type"] == "SUM")
    (rows,) = _tables("| aggregation | formula | result |")
    fields = {"COUNT": None, "UNIQUE_COUNT": "user"}
    assert {row[0].strip("`") for row in rows} == {
        "SUM",
        "COUNT",
        "MAX",
        "MIN",
        "AVG",
        "UNIQUE_COUNT",
        "LATEST",
    }

    for name, _, result in rows:
        kind = name.strip("`")
        aggregation = {"type": kind, "field": fields.get(kind, "tokens")}
        check = {**stream, "aggregation": {k: v for k, v in aggregation.items() if v}}
        assert _reference_quantity(check) == Decimal(_bold_figure(result)), kind


# --- the product, through the HTTP API ----------------------------------------------------------


def _subscribe(
    api: Api,
    name: str,
    plan: dict[str, Any],
    start: datetime | str,
    timezone: str = "UTC",
) -> dict[str, Any]:
    plan_id = api.create("/v1/plans", {"name": name, "lookup_key": name, **plan})["id"]
    customer = {"external_id": name, "name": name, "timezone": timezone}
    api.create("/v1/customers", customer)
    start_text = start if isinstance(start, str) else start.isoformat()
    return api.create(
        "/v1/subscriptions",
        {"external_customer_id": name, "plan_id": plan_id, "start_date": start_text},
    )


def _sum_feature(api: Api, name: str) -> str:
    feature = {
        "name": name,
        "lookup_key": name,
        "event_name": name,
        "aggregation": {"type": "SUM", "field": "value"},
    }
    return str(api.create("/v1/features", feature)["id"])


@dataclass
class _Group:
    """One plan (and one customer subscribed to it) holding many doc examples as its lines."""

    name: str
    currency: str
    prices: list[dict[str, Any]] = field(default_factory=list)
    # (kind, quantity, amount) per line; amount None: the doc states no amount there.
    want: list[tuple[str, Decimal, Decimal | None]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    total: Decimal | None = None


def _price_line(
    api: Api,
    group: _Group,
    price: dict[str, Any],
    quantity: Decimal,
    base: datetime,
    amount: Decimal,
) -> None:
    if price["billing_model"] == "FLAT_FEE":
        group.prices.append(price)
        group.want.append(("flat_fee", quantity, amount))
        return
    name = f"{group.name}-line{len(group.prices)}"
    group.prices.append({**price, "feature_id": _sum_feature(api, name)})
    group.want.append(("usage", quantity, amount))
    if quantity != 0:
        group.events.append(
            {
                "event_id": name,
                "event_name": name,
                "external_customer_id": group.name,
                "timestamp": base.isoformat(),
                "properties": {"value": format(quantity, "f")},
            }
        )


def test_doc_figures_match_the_product_over_http(runtime: LocalRuntime) -> None:
    """Every aggregation, price and invoice example as a line of a proposed invoice: one plan
    per currency holds the examples as separate features and prices (an invoice example gets
    its own plan, for its total). One stream drain, then every line is compared with the doc."""
    api = new_tenant(runtime)
    now = datetime.now(UTC)
    started = now - timedelta(hours=2)
    base = now - timedelta(hours=1)
    groups: dict[str, _Group] = {}

    def group_for(currency: str) -> _Group:
        return groups.setdefault(currency, _Group(f"doc-{currency.lower()}", currency))

    for check in _of_kind("aggregation"):
        group = group_for("USD")
        feature = {k: v for k, v in _feature(check).items() if k != "id"}
        feature_id = api.create("/v1/features", feature)["id"]
        group.prices.append({"billing_model": "PER_UNIT", "feature_id": feature_id, "amount": "0"})
        group.want.append(("usage", Decimal(check["quantity"]), None))
        group.events.extend(_events(check, base, group.name))
    for check in _of_kind("price"):
        for price, quantity, amount in _price_lines(check):
            _price_line(api, group_for(check["currency"]), price, quantity, base, amount)
    for check in _of_kind("invoice"):
        group = groups[str(check["number"])] = _Group(
            f"doc-invoice-{check['number']}", check["currency"]
        )
        group.total = Decimal(check["total"])
        for price, quantity, amount in _price_lines(check):
            _price_line(api, group, price, quantity, base, amount)

    subscriptions = {}
    for group in groups.values():
        plan = {"currency": group.currency, "prices": group.prices}
        subscriptions[group.name] = _subscribe(api, group.name, plan, started)["id"]
        reply = api.call("POST", "/v1/events/bulk", {"events": group.events})
        assert reply.status == 202, reply
    runtime.drain_stream()

    for group in groups.values():
        invoice = api.get(f"/v1/subscriptions/{subscriptions[group.name]}/invoices/proposed")
        got = [
            (line["kind"], Decimal(line["quantity"]), Decimal(line["amount"]))
            for line in invoice["line_items"]
        ]
        want = [
            (kind, quantity, found[2] if amount is None else amount)
            for (kind, quantity, amount), found in zip(group.want, got, strict=True)
        ]
        assert got == want, group.name
        if group.total is not None:
            assert Decimal(invoice["total"]) == group.total


def test_doc_period_setups_match_the_product_over_http(runtime: LocalRuntime) -> None:
    """The product's current period for each doc subscription equals the reference model's."""
    api = new_tenant(runtime)
    feature_id = _sum_feature(api, "doc-periods")
    for check in _of_kind("periods"):
        name = f"doc-period-{check['number']}"
        plan = {
            "currency": "USD",
            "billing_period": check["billing_period"],
            "billing_period_count": check.get("billing_period_count", 1),
            "billing_cycle": check["billing_cycle"],
            "prices": [{"billing_model": "PER_UNIT", "feature_id": feature_id, "amount": "1"}],
        }
        created = _subscribe(api, name, plan, check["start_date"], check["timezone"])
        now = datetime.now(UTC)
        subscription = {"start_date": check["start_date"], "timezone": check["timezone"]}
        start = parse_timestamp(check["start_date"])
        want = period_containing(check, subscription, max(now, start))
        if want.end - now < timedelta(minutes=1):
            continue  # the product's clock could already be in the next period

        found = api.get(f"/v1/subscriptions/{created['id']}")

        got = (
            parse_timestamp(found["current_period_start"]),
            parse_timestamp(found["current_period_end"]),
        )
        assert got == (want.start, want.end), (check, found)
