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
import re
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
SESSION_EVENT = "llm.session"
# Each tenant's own backdating limit, so that settings can be told apart.
BACKDATING_DAYS = {"a": 30, "b": 40}

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
        _reconcile_while_the_stream_lags(story, KEY_A, "tenant-a", story.ids["a"])
        _close_the_daily_periods(story)
        _manage_invoices(story, KEY_A, story.ids["a"])
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
    """The same catalog, customer and event ids in each tenant; only the token counts differ.

    Besides the monthly o1 subscription, the customer has a daily one that started two days
    and two hours ago, so that two of its periods are due to be invoiced.
    """
    settings = {
        "invoice_grace_period_seconds": 3600,
        "backdating_limit_days": BACKDATING_DAYS[prefix],
    }
    assert story.call(key, "PUT", "/v1/settings", settings).status == 200
    feature = _created(story.call(key, "POST", "/v1/features", _feature("o1-input")))
    users = _created(
        story.call(
            key,
            "POST",
            "/v1/features",
            {
                "name": "distinct users",
                "lookup_key": "users",
                "event_name": SESSION_EVENT,
                "aggregation": {"type": "UNIQUE_COUNT", "field": "user"},
            },
        )
    )
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
    daily_plan = _created(
        story.call(
            key,
            "POST",
            "/v1/plans",
            {
                "name": "daily",
                "lookup_key": "daily",
                "currency": "USD",
                "billing_period": "DAILY",
                "prices": [
                    {"billing_model": "FLAT_FEE", "amount": "10.00"},
                    {"feature_id": feature["id"], "billing_model": "PER_UNIT", "amount": "0.01"},
                    {"feature_id": users["id"], "billing_model": "PER_UNIT", "amount": "1.00"},
                ],
            },
        )
    )
    started = datetime.now(UTC) - timedelta(days=2, hours=2)
    daily = _created(
        story.call(
            key,
            "POST",
            "/v1/subscriptions",
            {
                "customer_id": customer["id"],
                "plan_id": daily_plan["id"],
                "start_date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
    )
    single = story.call(key, "POST", "/v1/events", _event("shared-event-1", input_tokens))
    bulk = story.call(key, "POST", "/v1/events/bulk", {"events": [_event("shared-event-2", "0")]})
    assert single.status == bulk.status == 202, (single, bulk)
    return {
        "feature": feature["id"],
        "users_feature": users["id"],
        "plan": plan["id"],
        "customer": customer["id"],
        "subscription": subscription["id"],
        "daily_subscription": daily["id"],
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
        "/v1/settings",
    ):
        reply = story.call(key, "GET", path)
        assert reply.status == 200, (path, reply)


def _reconcile_while_the_stream_lags(
    story: Story, key: str, tenant_id: str, ids: dict[str, str]
) -> None:
    """Recount and repair while the aggregator is behind on a distinct count: the repair claims
    the value and rewrites the counter, so the stream record arriving later adds nothing."""
    session = {
        "event_id": "session-1",
        "event_name": SESSION_EVENT,
        "external_customer_id": SHARED_CUSTOMER,
        "properties": {"user": "user-1"},
    }
    request = {"tenant_id": tenant_id, "customer_id": ids["customer"], "repair": True}
    # Holding the runtime's lock keeps the stream pump from delivering the event meanwhile.
    with story.runtime.lock:
        assert story.call(key, "POST", "/v1/events", session).status == 202
        repaired = story.runtime.invoke("ReconcileFunction", request)
    story.runtime.drain_stream()
    recounted = story.runtime.invoke("ReconcileFunction", {**request, "repair": False})

    [difference] = repaired["differences"]
    assert difference.endswith("counted 0, recounted 1 (repaired)"), repaired
    assert recounted["differences"] == []


def _close_the_daily_periods(story: Story) -> None:
    closed = story.runtime.close_periods()

    assert closed == {"queued": 2, "failed": 0}, closed
    for tenant, key in (("a", KEY_A), ("b", KEY_B)):
        query = f"subscription_id={story.ids[tenant]['daily_subscription']}"
        listed = story.call(key, "GET", f"/v1/invoices?{query}").body["items"]
        assert [invoice["number"] for invoice in listed] == ["INV-000001", "INV-000002"]
        story.ids[tenant]["invoice"] = listed[0]["id"]


def _manage_invoices(story: Story, key: str, ids: dict[str, str]) -> None:
    """Read, void and cancel: what the invoices function does besides listing."""
    listed = story.call(key, "GET", "/v1/invoices?status=finalized&limit=1")
    assert listed.status == 200, listed
    second = story.call(key, "GET", f"/v1/invoices?cursor={listed.body['next_cursor']}")
    [last] = second.body["items"]
    assert story.call(key, "GET", f"/v1/invoices/{last['id']}").status == 200
    assert story.call(key, "POST", f"/v1/invoices/{last['id']}/void").body["status"] == "void"
    canceled = story.call(
        key, "POST", f"/v1/subscriptions/{ids['daily_subscription']}/cancel", {"at": "now"}
    )
    assert canceled.status == 200, canceled
    assert [invoice["number"] for invoice in canceled.body["invoices"]] == ["INV-000003"]


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
    """Record (function, DynamoDB action, table or index name) per invocation, and every log line,
    until the returned function is called."""
    original_invoke = story.runtime.invoke

    def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
        token = current_function.set(function)
        try:
            return original_invoke(function, event)
        finally:
            current_function.reset(token)

    def on_call(model: Any, params: dict[str, Any], **_: Any) -> None:
        resource = f"index/{params['IndexName']}" if params.get("IndexName") else "table"
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
    for key, tenant in ((KEY_A, "a"), (KEY_B, "b")):
        listed = {f["id"] for f in story.call(key, "GET", "/v1/features").body["items"]}
        assert listed == {story.ids[tenant]["feature"], story.ids[tenant]["users_feature"]}


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
        tokens_events = [e for e in listed.body["items"] if e["event_name"] == EVENT_NAME]
        assert sorted(e["event_id"] for e in tokens_events) == ["shared-event-1", "shared-event-2"]
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


def _invoices_are_listed_per_tenant(story: Story) -> None:
    a, b = story.ids["a"], story.ids["b"]
    listed_a = {i["id"] for i in story.call(KEY_A, "GET", "/v1/invoices").body["items"]}
    listed_b = {i["id"] for i in story.call(KEY_B, "GET", "/v1/invoices").body["items"]}
    assert len(listed_a) == 3 and len(listed_b) == 2
    assert not listed_a & listed_b
    # Another tenant's subscription or customer id filters down to nothing, not to its invoices.
    for query in (f"subscription_id={a['daily_subscription']}", f"customer_id={a['customer']}"):
        foreign = story.call(KEY_B, "GET", f"/v1/invoices?{query}")
        assert (foreign.status, foreign.body["items"]) == (200, []), query
    assert b["invoice"] in listed_b


def _other_tenants_invoice_cannot_be_voided(story: Story) -> None:
    invoice_id = story.ids["a"]["invoice"]

    reply = story.call(KEY_B, "POST", f"/v1/invoices/{invoice_id}/void")

    assert reply.status == 404, reply
    assert reply.body["code"] == "not_found"
    assert story.call(KEY_A, "GET", f"/v1/invoices/{invoice_id}").body["status"] == "finalized"


def _other_tenants_subscription_cannot_be_canceled(story: Story) -> None:
    subscription_id = story.ids["a"]["subscription"]

    reply = story.call(KEY_B, "POST", f"/v1/subscriptions/{subscription_id}/cancel", {"at": "now"})

    assert reply.status == 404, reply
    assert reply.body["code"] == "not_found"
    kept = story.call(KEY_A, "GET", f"/v1/subscriptions/{subscription_id}").body
    assert (kept["status"], kept["ended_at"]) == ("active", None)


def _settings_are_read_per_tenant(story: Story) -> None:
    for key, tenant in ((KEY_A, "a"), (KEY_B, "b")):
        settings = story.call(key, "GET", "/v1/settings").body
        assert settings["backdating_limit_days"] == BACKDATING_DAYS[tenant]


def _settings_are_written_per_tenant(story: Story) -> None:
    changed = {"invoice_grace_period_seconds": 60, "backdating_limit_days": 7}

    assert story.call(KEY_B, "PUT", "/v1/settings", changed).status == 200

    try:
        assert story.call(KEY_B, "GET", "/v1/settings").body == changed
        kept = story.call(KEY_A, "GET", "/v1/settings").body
        assert kept["backdating_limit_days"] == BACKDATING_DAYS["a"]
    finally:
        restored = {
            "invoice_grace_period_seconds": 3600,
            "backdating_limit_days": BACKDATING_DAYS["b"],
        }
        assert story.call(KEY_B, "PUT", "/v1/settings", restored).status == 200


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
    "POST /v1/subscriptions/{subscription_id}/cancel": (
        _other_tenants_subscription_cannot_be_canceled
    ),
    "GET /v1/invoices": _invoices_are_listed_per_tenant,
    "GET /v1/invoices/{invoice_id}": _other_tenants_ids_are_not_found(
        "/v1/invoices/{id}", "invoice"
    ),
    "POST /v1/invoices/{invoice_id}/void": _other_tenants_invoice_cannot_be_voided,
    "GET /v1/settings": _settings_are_read_per_tenant,
    "PUT /v1/settings": _settings_are_written_per_tenant,
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
                index = re.search(r"/index/(\w+)", json.dumps(statement["Resource"]))
                resource = f"index/{index.group(1)}" if index else "table"
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
        # The authorizer does not know the tenant yet; the scheduler works for all of them.
        if record["function_name"] not in {"AuthorizerFunction", "CloseSchedulerFunction"}:
            assert record.get("tenant_id") in {"tenant-a", "tenant-b"}, line
    http_lines = [r for r in records if r["function_name"] == "IngestFunction"]
    assert http_lines and all(r.get("correlation_id") for r in http_lines)
