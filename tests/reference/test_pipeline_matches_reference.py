"""Generated catalogs, subscriptions and event streams: the real pipeline against the reference.

Proposed invoices. Each generated case is a fresh tenant (its own API key) on the local runtime.
It creates features (every aggregation, filters on text, numbers and booleans), one plan per
account (every price model, tiers, included quantities, minimums, 12-place unit amounts,
USD/JPY/KWD, every period, counts 1 to 3, both cycles), a customer in a time zone and a
subscription that started in the past. Events of all accounts (and of a customer without a
subscription) go in shuffled, in chunks, some twice, with timestamps inside the current period,
exactly at its start, just before it, in the previous period and before the start date; a few
are invalid or too old, and the request holding them must be refused. The proposed invoice of
every account must then equal the reference model's, line by line, to the minor unit.

Usage windows. Hour and day windows of a customer's usage, around DST changes of the last year
and in recent days, with events on and around window boundaries.

"Now" is read once per case and all generated times are relative to it. A case whose current
period ends within two minutes of it is discarded, so the pipeline's own clock (read a moment
later) lands in the same period; no timestamp is in the future or within two minutes of the
backdating limit. `HYPOTHESIS_PROFILE=long` runs 2,000 cases per property.
"""

from __future__ import annotations

import calendar
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, Phase, assume, event, given, note, settings
from hypothesis import strategies as st

from tests.reference.harness import PASSED_CASES, Api, RuntimePool, examples, new_tenant
from tests.reference.model import (
    Period,
    canonical_text,
    local_wall,
    local_wall_to_utc,
    number_of,
    parse_timestamp,
    period_bounds,
    period_containing,
    reference_invoice,
    reference_usage_windows,
    rejection_reasons,
    window_starts,
)

# Kolkata is +5:30 without DST; Lord Howe shifts by 30 minutes; Santiago shifts at midnight, so
# a local day can start at 01:00 (a gap swallowed midnight) or hold 23:00-00:00 twice.
TIMEZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "America/Santiago",
]
PERIODS = ["DAILY", "WEEKLY", "MONTHLY", "QUARTERLY", "ANNUAL"]
CURRENCIES = ["USD", "JPY", "KWD"]
AGGREGATIONS = ["SUM", "COUNT", "MAX", "MIN", "AVG", "UNIQUE_COUNT", "LATEST"]
EVENT_NAMES = ["llm.tokens", "api.call"]
NUMERIC_FIELDS = ["tokens", "latency_ms"]
UNIQUE_FIELDS = ["user", "tokens"]
# Filter values in every spelling the contract equates: 200 == "200" == 200.0 == "2E+2".
FILTER_VALUES: dict[str, list[Any]] = {
    "model": ["gpt-4o", "claude", "Claude"],
    "status": [200, "200", Decimal("200.0"), "2E+2", 404, "404.0"],
    "cached": [True, False, "true"],
}
PROPERTY_VALUES: dict[str, list[Any]] = {
    "model": ["gpt-4o", "claude", "Claude", "llama"],
    "status": [200, "200", Decimal("200.0"), Decimal("2E+2"), "2e2", 404, "404", 500],
    "cached": [True, False, "true", "false", "yes"],
}
USERS = ["u1", "u2", "U1", 1, "1", Decimal("1.0"), True, "true"]
APPROXIMATE_SECONDS = {
    "DAILY": 86_400,
    "WEEKLY": 7 * 86_400,
    "MONTHLY": 30 * 86_400,
    "QUARTERLY": 91 * 86_400,
    "ANNUAL": 365 * 86_400,
}
# How far back an anchored start date may lie, per period: enough for many periods, bounded so
# the reference model's period walk stays quick.
MAX_MONTHS_BACK = {"DAILY": 3, "WEEKLY": 12, "MONTHLY": 40, "QUARTERLY": 60, "ANNUAL": 80}
SAFETY_MARGIN = timedelta(minutes=2)


# --- strategies: catalog ----------------------------------------------------------------------


@st.composite
def decimals(draw: st.DrawFn, max_whole: int, max_places: int) -> Decimal:
    places = draw(st.integers(0, max_places))
    mantissa = draw(st.integers(0, max_whole * 10**places))
    return Decimal(mantissa).scaleb(-places)


def amounts(max_whole: int = 100) -> st.SearchStrategy[str]:
    typical = st.sampled_from(["15.00", "0.000015", "7.5", "0", "0.000000000001", "0.005", "1"])
    return st.one_of(typical, decimals(max_whole, 12)).map(lambda d: format(Decimal(d), "f"))


QUANTITY_BOUNDS = st.sampled_from(
    [Decimal(v) for v in ("1", "10", "100", "2.5", "1000", "999999", "1000000", "1000001")]
    + [Decimal(5_000_000), Decimal(10_000_000)]
)
DIVISORS = st.sampled_from(["1", "3", "1000", "1000000", "0.5"])


@st.composite
def features(draw: st.DrawFn, index: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(AGGREGATIONS))
    aggregation: dict[str, Any] = {"type": kind}
    if kind == "UNIQUE_COUNT":
        aggregation["field"] = draw(st.sampled_from(UNIQUE_FIELDS))
    elif kind != "COUNT":
        aggregation["field"] = draw(st.sampled_from(NUMERIC_FIELDS))
    filters = {}
    for name, choices in FILTER_VALUES.items():
        if draw(st.integers(0, 2)) == 0:
            filters[name] = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2))
    return {
        "id": f"f{index}",
        "name": f"Feature {index} ({kind})",
        "lookup_key": f"feature-{index}",
        "event_name": draw(st.sampled_from(EVENT_NAMES)),
        "aggregation": aggregation,
        "filters": filters,
    }


@st.composite
def tiers(draw: st.DrawFn) -> list[dict[str, Any]]:
    bounds = sorted(draw(st.sets(QUANTITY_BOUNDS, max_size=3)))
    result = []
    for up_to in [*bounds, None]:
        tier: dict[str, Any] = {
            "up_to": None if up_to is None else format(up_to, "f"),
            "unit_amount": draw(amounts(10)),
        }
        if draw(st.booleans()):
            tier["per"] = draw(DIVISORS)
        if draw(st.booleans()):
            tier["flat_amount"] = draw(amounts(50))
        result.append(tier)
    return result


@st.composite
def usage_prices(draw: st.DrawFn, feature_id: str) -> dict[str, Any]:
    model = draw(st.sampled_from(["PACKAGE", "PER_UNIT", "TIERED"]))
    price: dict[str, Any] = {"billing_model": model, "feature_id": feature_id}
    if model == "PACKAGE":
        price["amount"] = draw(amounts())
        price["package_size"] = format(draw(QUANTITY_BOUNDS), "f")
        rounding = draw(st.sampled_from([None, "up", "down"]))
        if rounding is not None:
            price["rounding"] = rounding
    elif model == "PER_UNIT":
        price["amount"] = draw(amounts(10))
        if draw(st.booleans()):
            price["per"] = draw(DIVISORS)
    else:
        price["tier_mode"] = draw(st.sampled_from(["VOLUME", "GRADUATED"]))
        price["tiers"] = draw(tiers())
    if draw(st.integers(0, 2)) == 0:
        price["included_quantity"] = format(draw(QUANTITY_BOUNDS), "f")
    if draw(st.integers(0, 2)) == 0:
        price["minimum_amount"] = draw(amounts(200))
    return price


# --- strategies: accounts and events ----------------------------------------------------------


@dataclass
class EventSpec:
    """An event whose timestamp is placed relative to its account's current period."""

    event_name: str
    properties: dict[str, Any]
    placement: tuple[Any, ...]
    timestamp_style: str
    other_customer: bool
    # Most events placed beyond the backdating limit are moved inside it, so that the requests
    # holding them are not all refused; the others check that ingest refuses them.
    keep_if_too_old: bool


@dataclass
class AccountSpec:
    plan: dict[str, Any]
    timezone: str
    start: tuple[Any, ...]
    events: list[EventSpec] = field(default_factory=list)


def numbers() -> st.SearchStrategy[Any]:
    """Numeric property values in every spelling a client sends: ints, JSON decimals, strings."""
    magnitude = st.one_of(
        st.integers(0, 10_000_000).map(Decimal),
        st.sampled_from([0, 1, 999_999, 1_000_000, 1_000_001, 5_000_000]).map(Decimal),
        decimals(1000, 6),
    )
    signed = st.tuples(magnitude, st.integers(0, 9)).map(lambda p: -p[0] if p[1] == 0 else p[0])
    return st.tuples(signed, st.sampled_from(["int", "json", "text", "exponent"])).map(_spell)


def _spell(pair: tuple[Decimal, str]) -> Any:
    value, style = pair
    if style == "int" and value == value.to_integral_value():
        return int(value)
    if style == "text":
        return format(value, "f")
    if style == "exponent":
        return f"{value:E}"
    return value


PLACEMENTS = st.one_of(
    st.tuples(st.just("current"), st.floats(0, 1)),
    st.tuples(st.just("current"), st.floats(0, 1)),
    st.tuples(st.just("current"), st.floats(0, 1)),
    st.just(("current_start",)),
    st.tuples(st.just("before_current"), st.sampled_from([1, 1000, 1_000_000, 3_600_000_000])),
    st.tuples(st.just("previous"), st.floats(0, 1)),
    st.just(("previous_start",)),
    st.just(("start_date",)),
    st.tuples(st.just("before_start"), st.sampled_from([1, 1_000_000, 86_400_000_000])),
    st.tuples(st.just("near_now"), st.integers(3, 90)),
    st.tuples(st.just("same_as"), st.integers(0, 50)),
    st.tuples(st.just("same_as"), st.integers(0, 50)),
)


def spellings(value: Any) -> list[Any]:
    """Every spelling of a filter value that the contract says is the same value."""
    text = canonical_text(value)
    if text in ("true", "false"):
        return [text == "true", text]
    if number_of(value) is None:
        return [value]
    number = Decimal(text)
    result: list[Any] = [text, number + Decimal("0.0"), f"{number:E}", Decimal(f"{number:E}")]
    if number == number.to_integral_value():
        result.append(int(number))
    return result


@st.composite
def event_specs(draw: st.DrawFn, catalog_features: list[dict[str, Any]]) -> EventSpec:
    # Most events aim at one feature (its name, its filters in any spelling); the others are
    # noise that a feature must not count.
    target = draw(st.sampled_from(catalog_features))
    aimed = draw(st.integers(0, 4)) > 0
    filters = target["filters"] if aimed else {}
    properties: dict[str, Any] = {}
    for name, choices in PROPERTY_VALUES.items():
        if name in filters and draw(st.integers(0, 5)) > 0:
            allowed = draw(st.sampled_from(filters[name]))
            properties[name] = draw(st.sampled_from(spellings(allowed)))
        elif draw(st.integers(0, 3)) > 0:
            properties[name] = draw(st.sampled_from(choices))
    for name in NUMERIC_FIELDS:
        # Rarely missing or not a number: ingest must then reject the request when the event
        # matches a feature that needs a number there (the reference model says which).
        roll = draw(st.integers(0, 80))
        if roll == 0:
            continue
        properties[name] = "lots" if roll == 1 else draw(numbers())
    if draw(st.integers(0, 80)) > 0:
        properties["user"] = draw(st.sampled_from(USERS))
    return EventSpec(
        event_name=target["event_name"] if aimed else draw(st.sampled_from(EVENT_NAMES)),
        properties=properties,
        placement=draw(PLACEMENTS),
        timestamp_style=draw(st.sampled_from(["Z", "offset", "local", "naive"])),
        other_customer=draw(st.integers(0, 9)) == 0,
        keep_if_too_old=draw(st.integers(0, 4)) == 0,
    )


START_TIMES = st.one_of(
    st.sampled_from([(0, 0, 0, 0), (2, 30, 0, 0), (1, 30, 0, 0), (23, 59, 59, 999_999)]),
    st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), st.just(0)),
)


@st.composite
def start_specs(draw: st.DrawFn, period: str, count: int) -> tuple[Any, ...]:
    if draw(st.booleans()):
        seconds = draw(st.integers(90, 3 * APPROXIMATE_SECONDS[period] * count))
        return ("offset", seconds)
    months_back = draw(st.integers(1, MAX_MONTHS_BACK[period]))
    day = draw(st.sampled_from([1, 15, 28, 29, 30, 31]))
    return ("anchor", months_back, day, draw(START_TIMES))


@st.composite
def accounts(draw: st.DrawFn, catalog_features: list[dict[str, Any]], index: int) -> AccountSpec:
    period = draw(st.sampled_from(PERIODS))
    count = draw(st.integers(1, 3))
    priced = draw(st.lists(st.sampled_from(catalog_features), min_size=1, max_size=4, unique_by=id))
    prices = [draw(usage_prices(feature["id"])) for feature in priced]
    if draw(st.integers(0, 3)) == 0:
        flat = {"billing_model": "FLAT_FEE", "amount": draw(amounts(100))}
        prices.insert(draw(st.integers(0, len(prices))), flat)
    plan = {
        "name": f"Plan {index}",
        "lookup_key": f"plan-{index}",
        "currency": draw(st.sampled_from(CURRENCIES)),
        "billing_period": period,
        "billing_period_count": count,
        "billing_cycle": draw(st.sampled_from(["anniversary", "calendar"])),
        "prices": prices,
    }
    return AccountSpec(
        plan=plan,
        timezone=draw(st.sampled_from(TIMEZONES)),
        start=draw(start_specs(period, count)),
        events=draw(st.lists(event_specs(catalog_features), max_size=16)),
    )


@dataclass
class Scenario:
    features: list[dict[str, Any]]
    accounts: list[AccountSpec]
    chunking: random.Random
    resend: list[int]
    backdating_limit_days: int


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    feature_list = [draw(features(i)) for i in range(draw(st.integers(1, 4)))]
    account_list = [draw(accounts(feature_list, i)) for i in range(draw(st.integers(1, 2)))]
    return Scenario(
        features=feature_list,
        accounts=account_list,
        chunking=draw(st.randoms(use_true_random=False)),
        resend=draw(st.lists(st.integers(0, 60), max_size=4)),
        backdating_limit_days=draw(st.sampled_from([35, 366])),
    )


# --- making a case concrete at "now" ----------------------------------------------------------


def start_date_of(spec: tuple[Any, ...], timezone: str, now: datetime) -> datetime:
    if spec[0] == "offset":
        return now - timedelta(seconds=spec[1])
    _, months_back, day, (hour, minute, second, micro) = spec
    zone = ZoneInfo(timezone)
    local_now = local_wall(now, zone)
    months = local_now.year * 12 + local_now.month - 1 - months_back
    year, month = divmod(months, 12)
    month += 1
    day = min(day, calendar.monthrange(year, month)[1])
    wall = datetime(year, month, day, hour, minute, second, micro)
    return min(local_wall_to_utc(wall, zone), now - timedelta(seconds=90))


def place(
    placement: tuple[Any, ...],
    current: Period,
    previous: Period | None,
    start_date: datetime,
    now: datetime,
    placed: list[datetime],
) -> datetime:
    latest = now - timedelta(seconds=3)
    kind = placement[0]
    if kind == "current":
        span = max(latest - current.start, timedelta(0))
        return current.start + span * placement[1]
    if kind == "current_start":
        return current.start
    if kind == "before_current":
        return current.start - timedelta(microseconds=placement[1])
    if kind == "previous":
        if previous is None:
            return start_date - timedelta(days=1) * placement[1] - timedelta(microseconds=1)
        return previous.start + (previous.end - previous.start) * placement[1]
    if kind == "previous_start":
        return previous.start if previous else start_date - timedelta(seconds=1)
    if kind == "start_date":
        return start_date
    if kind == "before_start":
        return start_date - timedelta(microseconds=placement[1])
    if kind == "near_now":
        return now - timedelta(seconds=placement[1])
    if kind == "same_as" and placed:
        return placed[placement[1] % len(placed)]
    return current.start


def timestamp_text(instant: datetime, style: str, timezone: str) -> str:
    if style == "Z":
        return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if style == "offset":
        return instant.astimezone(ZoneInfo(timezone)).isoformat()
    if style == "local":
        return instant.astimezone(ZoneInfo("Asia/Kolkata")).isoformat()
    return instant.astimezone(UTC).replace(tzinfo=None).isoformat()


@dataclass
class Account:
    spec: AccountSpec
    external_id: str
    subscription: dict[str, Any]
    current: Period
    previous: Period | None
    subscription_id: str = ""


def concrete_accounts(scenario: Scenario, now: datetime) -> list[Account]:
    result = []
    for index, spec in enumerate(scenario.accounts):
        start_date = start_date_of(spec.start, spec.timezone, now)
        subscription = {
            "external_customer_id": f"customer-{index}",
            "start_date": start_date,
            "timezone": spec.timezone,
        }
        current = period_containing(spec.plan, subscription, now)
        # The pipeline reads its own clock a little later: it must land in the same period.
        assume(current.end - now > SAFETY_MARGIN)
        previous = (
            period_bounds(spec.plan, subscription, current.index - 1) if current.index else None
        )
        result.append(Account(spec, f"customer-{index}", subscription, current, previous))
    return result


def concrete_events(
    accounts: list[Account], now: datetime, backdating_limit_days: int
) -> list[dict[str, Any]]:
    events = []
    placed: list[datetime] = []
    oldest = now - timedelta(days=backdating_limit_days)
    for account_index, account in enumerate(accounts):
        for spec in account.spec.events:
            instant = place(
                spec.placement,
                account.current,
                account.previous,
                parse_timestamp(account.subscription["start_date"]),
                now,
                placed,
            )
            if instant < oldest + SAFETY_MARGIN and not spec.keep_if_too_old:
                instant = oldest + SAFETY_MARGIN + timedelta(hours=1)
            if abs(instant - oldest) < SAFETY_MARGIN:
                # The pipeline's clock runs a little behind ours: stay clear of the limit.
                instant = oldest - SAFETY_MARGIN
            placed.append(instant)
            customer = "customer-without-subscription" if spec.other_customer else None
            events.append(
                {
                    # Widths differ on purpose: LATEST breaks ties by event_id as text.
                    "event_id": f"evt-{account_index}-{len(events) * 7 % 23}-{len(events)}",
                    "event_name": spec.event_name,
                    "external_customer_id": customer or account.external_id,
                    "timestamp": timestamp_text(
                        instant, spec.timestamp_style, account.spec.timezone
                    ),
                    "properties": spec.properties,
                }
            )
    return events


# --- talking to the pipeline ------------------------------------------------------------------


def create_catalog(api: Api, scenario: Scenario, accounts: list[Account]) -> dict[str, str]:
    """Create features, plans, customers and subscriptions; the map from model to real ids."""
    ids: dict[str, str] = {}
    settings = {"backdating_limit_days": scenario.backdating_limit_days}
    assert api.call("PUT", "/v1/settings", settings).status == 200
    for feature in scenario.features:
        body = {key: value for key, value in feature.items() if key != "id"}
        ids[feature["id"]] = api.create("/v1/features", body)["id"]
    for account in accounts:
        plan = dict(account.spec.plan)
        plan["prices"] = [
            {**price, "feature_id": ids[price["feature_id"]]} if "feature_id" in price else price
            for price in plan["prices"]
        ]
        plan_id = api.create("/v1/plans", plan)["id"]
        customer = {
            "external_id": account.external_id,
            "name": account.external_id,
            "timezone": account.spec.timezone,
        }
        api.create("/v1/customers", customer)
        start = parse_timestamp(account.subscription["start_date"])
        subscription = api.create(
            "/v1/subscriptions",
            {
                "external_customer_id": account.external_id,
                "plan_id": plan_id,
                "start_date": start.isoformat().replace("+00:00", "Z"),
            },
        )
        account.subscription_id = subscription["id"]
    return ids


def send_events(
    api: Api, scenario: Scenario, events: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Send shuffled chunks (some events twice); the events the API accepted, in order."""
    outgoing = list(events)
    for index in scenario.resend:
        if events:
            outgoing.append(events[index % len(events)])
    rng = scenario.chunking
    rng.shuffle(outgoing)
    accepted: list[dict[str, Any]] = []
    while outgoing:
        size = rng.randint(1, 8)
        chunk, outgoing = outgoing[:size], outgoing[size:]
        rejected = any(
            rejection_reasons(scenario.features, event, now, scenario.backdating_limit_days)
            for event in chunk
        )
        if len(chunk) == 1 and rng.random() < 0.5:
            reply = api.call("POST", "/v1/events", chunk[0])
        else:
            reply = api.call("POST", "/v1/events/bulk", {"events": chunk})
        expected = 400 if rejected else 202
        assert reply.status == expected, (chunk, reply)
        if not rejected:
            accepted.extend(chunk)
    return accepted


def compare_invoice(
    api: Api, account: Account, catalog: dict[str, Any], ids: dict[str, str], expected: Any
) -> None:
    invoice = api.get(f"/v1/subscriptions/{account.subscription_id}/invoices/proposed")
    note(f"pipeline invoice: {invoice}")
    note(f"reference invoice: {expected}")
    assert parse_timestamp(invoice["period_start"]) == expected["period_start"], "period start"
    assert parse_timestamp(invoice["period_end"]) == expected["period_end"], "period end"
    lines = invoice["line_items"]
    assert len(lines) == len(expected["lines"])
    for line, want in zip(lines, expected["lines"], strict=True):
        want_feature = None if want["feature_id"] is None else ids[want["feature_id"]]
        assert line["feature_id"] == want_feature
        assert line["kind"] == want["kind"]
        assert Decimal(line["quantity"]) == want["quantity"], (line, want)
        assert Decimal(line["amount"]) == want["amount"], (line, want)
        assert Decimal(line["amount"]).as_tuple().exponent == want["amount"].as_tuple().exponent
    assert Decimal(invoice["subtotal"]) == expected["subtotal"]
    assert Decimal(invoice["total"]) == expected["total"]


def describe(account: Account, expected: dict[str, Any], scenario: Scenario) -> None:
    """Hypothesis statistics (`--hypothesis-show-statistics`): what the cases exercised."""
    plan = account.spec.plan
    event(f"period index {'0' if account.current.index == 0 else '>0'}")
    event(f"cycle {plan['billing_cycle']}")
    features = {feature["id"]: feature for feature in scenario.features}
    for price, line in zip(plan["prices"], expected["lines"], strict=True):
        kind = price.get("tier_mode", price["billing_model"])
        if price.get("feature_id"):
            aggregation = features[price["feature_id"]]["aggregation"]["type"]
            event(f"{aggregation} quantity {'zero' if line['quantity'] == 0 else 'non-zero'}")
        event(f"{kind} amount {'zero' if line['amount'] == 0 else 'non-zero'}")


# --- the property -------------------------------------------------------------------------------


@settings(
    max_examples=examples(60),
    deadline=None,
    # The explain phase replays a failure dozens of times through the whole pipeline.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(scenario=scenarios())
def test_proposed_invoices_match_the_reference_model(
    runtimes: RuntimePool, scenario: Scenario
) -> None:
    runtime = runtimes.for_case()
    now = datetime.now(UTC)
    accounts = concrete_accounts(scenario, now)
    events = concrete_events(accounts, now, scenario.backdating_limit_days)
    api = new_tenant(runtime)
    ids = create_catalog(api, scenario, accounts)

    accepted = send_events(api, scenario, events, now)
    runtime.drain_stream()

    catalog = {"features": scenario.features}
    for account in accounts:
        expected = reference_invoice(
            {**catalog, "plan": account.spec.plan}, account.subscription, accepted, now
        )
        compare_invoice(api, account, catalog, ids, expected)
        describe(account, expected, scenario)
    PASSED_CASES["proposed invoice"] += 1


# --- usage windows --------------------------------------------------------------------------


@dataclass
class WindowCase:
    features: list[dict[str, Any]]
    timezone: str
    window: str
    center: tuple[Any, ...]
    before: int
    after: int
    first_offset: float
    subscription_start: tuple[Any, ...]
    events: list[tuple[EventSpec, tuple[Any, ...]]]


WINDOW_PLACEMENTS = st.one_of(
    st.tuples(st.just("boundary"), st.integers(0, 80), st.sampled_from([0, -1, 1, -1_000_000])),
    st.tuples(st.just("inside"), st.integers(0, 80), st.floats(0, 1)),
    st.tuples(st.just("inside"), st.integers(0, 80), st.floats(0, 1)),
)


@st.composite
def window_cases(draw: st.DrawFn) -> WindowCase:
    feature_list = [draw(features(i)) for i in range(draw(st.integers(1, 2)))]
    window = draw(st.sampled_from(["HOUR", "DAY"]))
    span = 30 if window == "HOUR" else 4
    specs = draw(st.lists(event_specs(feature_list), max_size=20))
    return WindowCase(
        features=feature_list,
        timezone=draw(st.sampled_from(TIMEZONES)),
        window=window,
        center=draw(
            st.one_of(
                st.tuples(st.just("transition"), st.integers(0, 3)),
                st.tuples(st.just("recent"), st.integers(3 * 3600, 20 * 86_400)),
            )
        ),
        before=draw(st.integers(0, span)),
        after=draw(st.integers(1, span)),
        first_offset=draw(st.floats(0, 1)),
        subscription_start=draw(
            st.one_of(
                st.tuples(st.just("before"), st.integers(1, 200 * 3600)),
                st.tuples(st.just("inside"), st.floats(0, 1)),
            )
        ),
        events=[(spec, draw(WINDOW_PLACEMENTS)) for spec in specs],
    )


def utc_offset_changes(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Instants in [start, end) where the zone's UTC offset changes, to the second."""
    changes = []
    step = timedelta(hours=6)
    instant = start
    while instant < end:
        later = instant + step
        if instant.astimezone(zone).utcoffset() != later.astimezone(zone).utcoffset():
            low, high = instant, later
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            changes.append(high.replace(microsecond=0))
        instant = later
    return changes


def window_range(case: WindowCase, now: datetime) -> tuple[datetime, datetime]:
    zone = ZoneInfo(case.timezone)
    center = now - timedelta(seconds=case.center[1]) if case.center[0] == "recent" else None
    if case.center[0] == "transition":
        changes = utc_offset_changes(zone, now - timedelta(days=300), now - timedelta(days=3))
        center = changes[case.center[1] % len(changes)] if changes else now - timedelta(days=2)
    assert center is not None
    unit = timedelta(hours=1) if case.window == "HOUR" else timedelta(days=1)
    first = center - unit * case.before - unit * case.first_offset
    until = min(center + unit * case.after, now - timedelta(minutes=1))
    return first, until


def window_events(
    case: WindowCase, windows: list[tuple[datetime, datetime]], external_id: str, now: datetime
) -> list[dict[str, Any]]:
    events = []
    for index, (spec, placement) in enumerate(case.events):
        start, end = windows[placement[1] % len(windows)]
        if placement[0] == "boundary":
            instant = start + timedelta(microseconds=placement[2])
        else:
            instant = start + (end - start) * placement[2]
        # The last window may hold "now": no event from the future.
        instant = min(instant, now - timedelta(seconds=3))
        customer = "customer-without-subscription" if spec.other_customer else external_id
        events.append(
            {
                "event_id": f"win-{index * 7 % 23}-{index}",
                "event_name": spec.event_name,
                "external_customer_id": customer,
                "timestamp": timestamp_text(instant, spec.timestamp_style, case.timezone),
                "properties": spec.properties,
            }
        )
    return events


def compare_windows(api: Api, customer_id: str, feature_id: str, query: str, expected: Any) -> None:
    found = api.get(f"/v1/customers/{customer_id}/usage?{query}")
    assert found["feature_id"] == feature_id
    assert found["window"] == expected["window"]
    assert found["timezone"] == expected["timezone"]
    got = [
        (
            parse_timestamp(item["start"]),
            parse_timestamp(item["end"]),
            None if item["value"] is None else Decimal(item["value"]),
        )
        for item in found["items"]
    ]
    want = [(item["start"], item["end"], item["value"]) for item in expected["items"]]
    assert got == want, (query, found, expected)


@settings(
    max_examples=examples(30),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(case=window_cases())
def test_usage_windows_match_the_reference_model(runtimes: RuntimePool, case: WindowCase) -> None:
    runtime = runtimes.for_case()
    now = datetime.now(UTC)
    first, until = window_range(case, now)
    assume(first < until)
    zone = ZoneInfo(case.timezone)
    windows = window_starts(zone, case.window, first, until)
    if case.subscription_start[0] == "before":
        start_date = first - timedelta(seconds=case.subscription_start[1])
    else:
        start_date = first + (until - first) * case.subscription_start[1]
    external_id = "window-customer"
    subscription = {
        "external_customer_id": external_id,
        "start_date": start_date,
        "timezone": case.timezone,
    }
    events = window_events(case, windows, external_id, now)

    api = new_tenant(runtime)
    assert api.call("PUT", "/v1/settings", {"backdating_limit_days": 366}).status == 200
    ids = {f["id"]: api.create("/v1/features", _without_id(f))["id"] for f in case.features}
    plan = {
        "name": "Windows",
        "lookup_key": "windows",
        "currency": "USD",
        "prices": [
            {"billing_model": "PER_UNIT", "feature_id": real, "amount": "1"}
            for real in ids.values()
        ],
    }
    plan_id = api.create("/v1/plans", plan)["id"]
    customer = {"external_id": external_id, "name": "Windows", "timezone": case.timezone}
    customer_id = api.create("/v1/customers", customer)["id"]
    api.create(
        "/v1/subscriptions",
        {"customer_id": customer_id, "plan_id": plan_id, "start_date": _utc_text(start_date)},
    )
    accepted = []
    for first_index in range(0, len(events), 5):
        chunk = events[first_index : first_index + 5]
        reply = api.call("POST", "/v1/events/bulk", {"events": chunk})
        rejected = any(rejection_reasons(case.features, one, now, 366) for one in chunk)
        assert reply.status == (400 if rejected else 202), (chunk, reply)
        if not rejected:
            accepted.extend(chunk)
    runtime.drain_stream()

    catalog = {"features": case.features}
    query_base = {"from": _utc_text(first), "to": _utc_text(until), "window": case.window}
    for feature in case.features:
        expected = reference_usage_windows(
            catalog, subscription, accepted, feature["id"], first, until, case.window
        )
        query = urlencode({**query_base, "feature_id": ids[feature["id"]]})
        compare_windows(api, customer_id, ids[feature["id"]], query, expected)
    PASSED_CASES["usage windows"] += 1


def _without_id(feature: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in feature.items() if key != "id"}


def _utc_text(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_usage_windows_around_the_latest_dst_changes_match_the_reference_model(
    runtimes: RuntimePool,
) -> None:
    """Not generated: for each zone, the latest UTC offset change inside the backdating limit
    (New York and London one hour, Lord Howe 30 minutes, Santiago at midnight), events on and
    around it, then hour and day windows across it."""
    runtime = runtimes.for_case()
    now = datetime.now(UTC)
    api = new_tenant(runtime)
    assert api.call("PUT", "/v1/settings", {"backdating_limit_days": 366}).status == 200
    feature = {
        "id": "f0",
        "name": "Tokens",
        "lookup_key": "tokens",
        "event_name": "llm.tokens",
        "aggregation": {"type": "SUM", "field": "tokens"},
        "filters": {},
    }
    feature_id = api.create("/v1/features", _without_id(feature))["id"]
    plan = {
        "name": "DST",
        "lookup_key": "dst",
        "currency": "USD",
        "prices": [{"billing_model": "PER_UNIT", "feature_id": feature_id, "amount": "1"}],
    }
    plan_id = api.create("/v1/plans", plan)["id"]

    cases = []
    for zone_name in TIMEZONES:
        zone = ZoneInfo(zone_name)
        changes = utc_offset_changes(zone, now - timedelta(days=360), now - timedelta(days=3))
        change = changes[-1] if changes else now - timedelta(days=3)
        external_id = f"dst-{zone_name.replace('/', '-').lower()}"
        customer = {"external_id": external_id, "name": external_id, "timezone": zone_name}
        customer_id = api.create("/v1/customers", customer)["id"]
        start_date = change - timedelta(days=3)
        api.create(
            "/v1/subscriptions",
            {"customer_id": customer_id, "plan_id": plan_id, "start_date": _utc_text(start_date)},
        )
        offsets = [-3600, -1800, -1, 0, 1, 1800, 2700, 3600, 5400, 86_400, -86_400]
        events = [
            {
                "event_id": f"{external_id}-{index}",
                "event_name": "llm.tokens",
                "external_customer_id": external_id,
                "timestamp": _utc_text(change + timedelta(seconds=offset, microseconds=index)),
                "properties": {"tokens": 10**index},
            }
            for index, offset in enumerate(offsets)
        ]
        reply = api.call("POST", "/v1/events/bulk", {"events": events})
        assert reply.status == 202, reply
        subscription = {
            "external_customer_id": external_id,
            "start_date": start_date,
            "timezone": zone_name,
        }
        cases.append((customer_id, subscription, events, change))
    runtime.drain_stream()

    catalog = {"features": [feature]}
    for customer_id, subscription, events, change in cases:
        for window, reach in (("HOUR", timedelta(hours=4)), ("DAY", timedelta(days=2))):
            first, until = change - reach, change + reach
            expected = reference_usage_windows(
                catalog, subscription, events, "f0", first, until, window
            )
            query = urlencode(
                {
                    "feature_id": feature_id,
                    "from": _utc_text(first),
                    "to": _utc_text(until),
                    "window": window,
                }
            )
            compare_windows(api, customer_id, feature_id, query, expected)
