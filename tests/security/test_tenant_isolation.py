"""Two tenants with identical customer ids, lookup keys and event ids, through every route.

One story runs once per module on the local runtime (authorizer, routing and handlers exactly as
`meterbill serve` runs them), recording every DynamoDB call per function and every log line.
The tests then check isolation route by route, least privilege against template.yaml, and logs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterbill.http import logger as meterbill_logger
from meterbill.keys import create_api_key
from meterbill.local.runtime import LocalRuntime
from meterbill.local.template import Template
from meterbill.runtime import store
from tests.conftest import PROJECT_ROOT, TABLE_NAME

KEY_A = "mb_live_isolation_tenant_a_000000000000"
KEY_B = "mb_live_isolation_tenant_b_000000000000"
SHARED_CUSTOMER = "shared-customer"
# Appears only inside event properties: it must never reach a log line.
PRIVATE_PROMPT = "private-prompt-text-4f1c"
EVENT_NAME = "llm.tokens"

current_function: contextvars.ContextVar[str] = contextvars.ContextVar("current_function")


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Story:
    """What the two-tenant story produced: ids per tenant, calls per function, log lines."""

    runtime: LocalRuntime
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    log_lines: list[str] = field(default_factory=list)

    def call(self, key: str | None, method: str, path: str, body: Any = None) -> Reply:
        headers = {"x-api-key": key} if key else {}
        path, _, query = path.partition("?")
        payload = None if body is None else json.dumps(body)
        response = self.runtime.handle_http(method, path, query, headers, payload)
        parsed = json.loads(response.body, parse_float=Decimal) if response.body else None
        return Reply(response.status, parsed, response.headers)


# --- the story ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def story() -> Iterator[Story]:
    previous_limit = os.environ.get("INGEST_RATE_LIMIT")
    os.environ["INGEST_RATE_LIMIT"] = "1000"
    runtime = LocalRuntime(PROJECT_ROOT, table_name=TABLE_NAME)
    runtime.start()
    story = Story(runtime)
    restore = _record(story)
    try:
        create_api_key(store(), "tenant-a", "isolation", KEY_A)
        create_api_key(store(), "tenant-b", "isolation", KEY_B)
        story.ids["a"] = _populate(story, KEY_A, input_tokens="5000000", prefix="a")
        story.ids["b"] = _populate(story, KEY_B, input_tokens="1000000", prefix="b")
        runtime.drain_stream()
        _read_everything(story, KEY_A, story.ids["a"])
    finally:
        restore()
    try:
        yield story
    finally:
        runtime.stop()
        if previous_limit is None:
            os.environ.pop("INGEST_RATE_LIMIT", None)
        else:
            os.environ["INGEST_RATE_LIMIT"] = previous_limit


def _populate(story: Story, key: str, input_tokens: str, prefix: str) -> dict[str, str]:
    """The same catalog, customer and event ids in each tenant; only the token counts differ."""
    feature = _created(story.call(key, "POST", "/v1/features", _feature("o1-input")))
    plan = _created(
        story.call(
            key,
            "POST",
            "/v1/plans",
            {
                "name": "o1",
                "lookup_key": "o1",
                "currency": "USD",
                "prices": [
                    {
                        "feature_id": feature["id"],
                        "billing_model": "PACKAGE",
                        "amount": "15.00",
                        "package_size": "1000000",
                    }
                ],
            },
        )
    )
    customer = _created(
        story.call(key, "POST", "/v1/customers", {"external_id": SHARED_CUSTOMER, "name": prefix})
    )
    subscription = _created(
        story.call(
            key, "POST", "/v1/subscriptions", {"customer_id": customer["id"], "plan_id": plan["id"]}
        )
    )
    single = story.call(key, "POST", "/v1/events", _event("shared-event-1", input_tokens))
    bulk = story.call(key, "POST", "/v1/events/bulk", {"events": [_event("shared-event-2", "0")]})
    assert single.status == bulk.status == 202, (single, bulk)
    return {
        "feature": feature["id"],
        "plan": plan["id"],
        "customer": customer["id"],
        "subscription": subscription["id"],
    }


def _read_everything(story: Story, key: str, ids: dict[str, str]) -> None:
    """Every read route once, so that the recorded calls cover each function's read paths."""
    for path in (
        "/v1/features",
        f"/v1/features/{ids['feature']}",
        f"/v1/plans/{ids['plan']}",
        f"/v1/customers/{ids['customer']}",
        f"/v1/subscriptions/{ids['subscription']}",
        f"/v1/subscriptions/{ids['subscription']}/usage",
        f"/v1/subscriptions/{ids['subscription']}/invoices/proposed",
        f"/v1/events?external_customer_id={SHARED_CUSTOMER}",
        f"/v1/customers/{ids['customer']}/usage?{_today_query(ids['feature'])}",
    ):
        reply = story.call(key, "GET", path)
        assert reply.status == 200, (path, reply)


def _feature(lookup_key: str) -> dict[str, Any]:
    return {
        "name": "o1 input tokens",
        "lookup_key": lookup_key,
        "event_name": EVENT_NAME,
        "aggregation": {"type": "SUM", "field": "tokens"},
        "filters": {"prompt_type": ["input"]},
    }


def _event(event_id: str, tokens: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_name": EVENT_NAME,
        "external_customer_id": SHARED_CUSTOMER,
        "properties": {"prompt_type": "input", "tokens": tokens, "prompt": PRIVATE_PROMPT},
    }


def _created(reply: Reply) -> dict[str, Any]:
    assert reply.status == 201, reply
    body: dict[str, Any] = reply.body
    return body


def _record(story: Story) -> Callable[[], None]:
    """Record (function, DynamoDB action, table or index) per invocation, and every log line,
    until the returned function is called."""
    original_invoke = story.runtime.invoke

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        token = current_function.set(function)
        try:
            return original_invoke(function, event)
        finally:
            current_function.reset(token)

    def on_call(model: Any, params: dict[str, Any], **_: Any) -> None:
        resource = "index" if params.get("IndexName") else "table"
        story.calls[current_function.get("outside")].add((f"dynamodb:{model.name}", resource))

    story.runtime.invoke = invoke  # type: ignore[method-assign]
    store().client.meta.events.register("before-parameter-build.dynamodb.*", on_call)

    capture = _LineCapture(story.log_lines)
    capture.setFormatter(meterbill_logger.registered_formatter)
    python_logger = logging.getLogger(meterbill_logger.name)
    previous_level = python_logger.level
    python_logger.addHandler(capture)
    python_logger.setLevel(logging.INFO)

    def restore() -> None:
        store().client.meta.events.unregister("before-parameter-build.dynamodb.*", on_call)
        story.runtime.invoke = original_invoke  # type: ignore[method-assign]
        python_logger.removeHandler(capture)
        python_logger.setLevel(previous_level)

    return restore


class _LineCapture(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append(self.format(record))


# --- isolation, route by route -----------------------------------------------------------------

Probe = Callable[[Story], None]


def _other_tenants_ids_are_not_found(path: str, id_name: str) -> Probe:
    def probe(story: Story) -> None:
        a_id = story.ids["a"][id_name]
        reply = story.call(KEY_B, "GET", path.format(id=a_id))
        assert reply.status == 404, reply
        assert reply.body["code"] == "not_found"
        assert story.call(KEY_A, "GET", path.format(id=a_id)).status == 200

    return probe


def _features_are_listed_per_tenant(story: Story) -> None:
    listed_b = [f["id"] for f in story.call(KEY_B, "GET", "/v1/features").body["items"]]
    listed_a = [f["id"] for f in story.call(KEY_A, "GET", "/v1/features").body["items"]]
    assert listed_b == [story.ids["b"]["feature"]]
    assert listed_a == [story.ids["a"]["feature"]]


def _lookup_keys_are_unique_per_tenant_only(story: Story) -> None:
    assert story.call(KEY_A, "POST", "/v1/features", _feature("only-in-a")).status == 201
    assert story.call(KEY_B, "POST", "/v1/features", _feature("only-in-a")).status == 201
    assert story.call(KEY_B, "POST", "/v1/features", _feature("only-in-a")).status == 409


def _plans_cannot_price_another_tenants_feature(story: Story) -> None:
    price = {"feature_id": story.ids["a"]["feature"], "billing_model": "PER_UNIT", "amount": 1}
    plan = {"name": "x", "lookup_key": "x", "currency": "USD", "prices": [price]}
    reply = story.call(KEY_B, "POST", "/v1/plans", plan)
    assert reply.status == 400, reply
    assert "prices.0.feature_id" in reply.body["message"]


def _external_ids_are_unique_per_tenant_only(story: Story) -> None:
    customer = {"external_id": "registered-in-a-first", "name": "x"}
    assert story.call(KEY_A, "POST", "/v1/customers", customer).status == 201
    assert story.call(KEY_B, "POST", "/v1/customers", customer).status == 201


def _subscriptions_cannot_reach_another_tenants_plan_or_customer(story: Story) -> None:
    a, b = story.ids["a"], story.ids["b"]
    foreign_plan = {"customer_id": b["customer"], "plan_id": a["plan"]}
    foreign_customer = {"customer_id": a["customer"], "plan_id": b["plan"]}
    assert story.call(KEY_B, "POST", "/v1/subscriptions", foreign_plan).status == 404
    assert story.call(KEY_B, "POST", "/v1/subscriptions", foreign_customer).status == 404


def _events_with_the_same_ids_count_in_each_tenant(story: Story) -> None:
    for key, tenant, tokens in ((KEY_A, "a", "5000000"), (KEY_B, "b", "1000000")):
        usage = story.call(
            key, "GET", f"/v1/subscriptions/{story.ids[tenant]['subscription']}/usage"
        )
        assert [item["quantity"] for item in usage.body["items"]] == [tokens]


def _invoices_never_mix(story: Story) -> None:
    for key, tenant, total in ((KEY_A, "a", "75.00"), (KEY_B, "b", "15.00")):
        path = f"/v1/subscriptions/{story.ids[tenant]['subscription']}/invoices/proposed"
        invoice = story.call(key, "GET", path)
        assert invoice.status == 200, invoice
        assert invoice.body["total"] == total


def _event_listings_hold_only_the_tenants_events(story: Story) -> None:
    for key, tokens in ((KEY_A, "5000000"), (KEY_B, "1000000")):
        listed = story.call(key, "GET", f"/v1/events?external_customer_id={SHARED_CUSTOMER}")
        ids = sorted(e["event_id"] for e in listed.body["items"])
        assert ids == ["shared-event-1", "shared-event-2"]
        single = next(e for e in listed.body["items"] if e["event_id"] == "shared-event-1")
        assert Decimal(single["properties"]["tokens"]) == Decimal(tokens)


def _duplicates_are_scoped_to_the_tenant(story: Story) -> None:
    replay = {"events": [_event("shared-event-1", "999")]}
    assert story.call(KEY_A, "POST", "/v1/events/bulk", replay).body["duplicates"] == "1"
    fresh = {"events": [_event("only-b-sent-this", "0")]}
    assert story.call(KEY_B, "POST", "/v1/events/bulk", fresh).body["accepted"] == "1"
    assert story.call(KEY_A, "POST", "/v1/events/bulk", fresh).body["accepted"] == "1"


def _usage_charts_hold_only_the_tenants_usage(story: Story) -> None:
    for key, own, other, tokens in (
        (KEY_A, "a", "b", "5000000"),
        (KEY_B, "b", "a", "1000000"),
    ):
        query = (
            f"feature_id={story.ids[own]['feature']}&window=DAY"
            "&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
        )
        foreign = story.call(
            key, "GET", f"/v1/customers/{story.ids[other]['customer']}/usage?{query}"
        )
        assert foreign.status == 404, foreign
        today = _today_query(story.ids[own]["feature"])
        chart = story.call(key, "GET", f"/v1/customers/{story.ids[own]['customer']}/usage?{today}")
        assert chart.status == 200, chart
        assert sum(Decimal(item["value"]) for item in chart.body["items"]) == Decimal(tokens)


def _today_query(feature_id: str) -> str:
    now = datetime.now(UTC)
    start = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"feature_id={feature_id}&window=DAY&from={start}&to={end}"


def _public_document_holds_no_tenant_data(story: Story) -> None:
    document = json.dumps(story.call(None, "GET", "/v1/openapi.json").body, default=str)
    for tenant_ids in story.ids.values():
        assert not any(value in document for value in tenant_ids.values())


PROBES: dict[str, Probe] = {
    "POST /v1/events": _events_with_the_same_ids_count_in_each_tenant,
    "POST /v1/events/bulk": _duplicates_are_scoped_to_the_tenant,
    "GET /v1/events": _event_listings_hold_only_the_tenants_events,
    "POST /v1/features": _lookup_keys_are_unique_per_tenant_only,
    "GET /v1/features": _features_are_listed_per_tenant,
    "GET /v1/features/{feature_id}": _other_tenants_ids_are_not_found(
        "/v1/features/{id}", "feature"
    ),
    "POST /v1/plans": _plans_cannot_price_another_tenants_feature,
    "GET /v1/plans/{plan_id}": _other_tenants_ids_are_not_found("/v1/plans/{id}", "plan"),
    "POST /v1/customers": _external_ids_are_unique_per_tenant_only,
    "GET /v1/customers/{customer_id}": _other_tenants_ids_are_not_found(
        "/v1/customers/{id}", "customer"
    ),
    "GET /v1/customers/{customer_id}/usage": _usage_charts_hold_only_the_tenants_usage,
    "POST /v1/subscriptions": _subscriptions_cannot_reach_another_tenants_plan_or_customer,
    "GET /v1/subscriptions/{subscription_id}": _other_tenants_ids_are_not_found(
        "/v1/subscriptions/{id}", "subscription"
    ),
    "GET /v1/subscriptions/{subscription_id}/usage": _other_tenants_ids_are_not_found(
        "/v1/subscriptions/{id}/usage", "subscription"
    ),
    "GET /v1/subscriptions/{subscription_id}/invoices/proposed": _invoices_never_mix,
    "GET /v1/openapi.json": _public_document_holds_no_tenant_data,
}


def test_every_route_in_the_template_has_an_isolation_probe(template: Template) -> None:
    assert {route.route_key for route in template.http_routes()} == set(PROBES)


@pytest.mark.parametrize("route_key", sorted(PROBES))
def test_route_keeps_tenants_apart(story: Story, route_key: str) -> None:
    PROBES[route_key](story)


def test_proposed_invoice_of_another_tenant_is_not_found(story: Story) -> None:
    path = f"/v1/subscriptions/{story.ids['a']['subscription']}/invoices/proposed"

    assert story.call(KEY_B, "GET", path).status == 404


def test_every_authenticated_route_refuses_a_missing_or_unknown_key(
    story: Story, template: Template
) -> None:
    for route in template.http_routes():
        if not route.authenticated:
            continue
        path = route.path.replace("{", "").replace("}", "")
        for key in (None, "mb_live_unknown_key_0000000000000000"):
            reply = story.call(key, route.method, path, {} if route.method == "POST" else None)
            assert reply.status == 401, (route.route_key, reply)


# --- least privilege ---------------------------------------------------------------------------


def test_each_function_is_granted_exactly_the_dynamodb_actions_it_calls(
    story: Story, template: Template
) -> None:
    granted = _granted_dynamodb_actions(template)
    called = {function: calls for function, calls in story.calls.items() if function in granted}

    assert set(called) == {f for f, actions in granted.items() if actions}
    for function, actions in granted.items():
        assert called.get(function, set()) == actions, function


def _granted_dynamodb_actions(template: Template) -> dict[str, set[tuple[str, str]]]:
    granted: dict[str, set[tuple[str, str]]] = {}
    for function, properties in template.functions().items():
        actions: set[tuple[str, str]] = set()
        for policy in properties.get("Policies") or []:
            for statement in policy.get("Statement", []):
                resource = "index" if "/index/" in json.dumps(statement["Resource"]) else "table"
                listed = statement["Action"]
                for action in listed if isinstance(listed, list) else [listed]:
                    if action.startswith("dynamodb:"):
                        actions.add((action, resource))
        granted[function] = actions
    return granted


# --- logs --------------------------------------------------------------------------------------


def test_log_lines_carry_request_and_tenant_ids_and_no_secrets(story: Story) -> None:
    records = [json.loads(line) for line in story.log_lines]

    assert records, "the story logged nothing: the capture is broken"
    for line, record in zip(story.log_lines, records, strict=True):
        assert record.get("function_request_id"), line
        assert KEY_A not in line and KEY_B not in line
        assert PRIVATE_PROMPT not in line
        if record["function_name"] != "AuthorizerFunction":
            assert record.get("tenant_id") in {"tenant-a", "tenant-b"}, line
    http_lines = [r for r in records if r["function_name"] == "IngestFunction"]
    assert http_lines and all(r.get("correlation_id") for r in http_lines)
