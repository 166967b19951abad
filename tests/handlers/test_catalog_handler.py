"""The catalog function: features, plans, customers and subscriptions over the HTTP API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.handlers.api import Api
from tests.handlers.scenario import token_feature


def _feature(api: Api, prompt_type: str = "input") -> dict[str, Any]:
    reply = api.post("/v1/features", token_feature(prompt_type))
    assert reply.status == 201, reply.body
    return reply.body


def _customer(api: Api, external_id: str = "acme-ai") -> dict[str, Any]:
    reply = api.post("/v1/customers", {"external_id": external_id, "name": "Acme AI"})
    assert reply.status == 201, reply.body
    return reply.body


def _plan(api: Api, feature_id: str) -> dict[str, Any]:
    reply = api.post("/v1/plans", _plan_request([_package_price(feature_id)]))
    assert reply.status == 201, reply.body
    return reply.body


def _plan_request(prices: list[dict[str, Any]], currency: str = "USD") -> dict[str, Any]:
    return {"name": "OpenAI o1", "lookup_key": "openai-o1", "currency": currency, "prices": prices}


def _package_price(feature_id: str) -> dict[str, Any]:
    return {
        "feature_id": feature_id,
        "billing_model": "PACKAGE",
        "amount": "15.00",
        "package_size": "1000000",
    }


def _assert_error(body: dict[str, Any], code: str, status: int, field: str) -> None:
    assert body["code"] == code
    assert body["http_status_code"] == status
    assert field in body["message"]
    assert isinstance(body["details"], list)


# --- features -------------------------------------------------------------------------------


def test_create_feature_answers_201_with_a_feat_id_and_the_feature(catalog_api: Api) -> None:
    request = token_feature("input")

    reply = catalog_api.post("/v1/features", request)

    assert reply.status == 201
    assert reply.body["id"].startswith("feat_")
    assert reply.body["lookup_key"] == "o1-input-tokens"
    assert reply.body["aggregation"] == {"type": "SUM", "field": "tokens"}
    assert reply.body["filters"] == {"model": ["OpenAI O1"], "prompt_type": ["input"]}


def test_created_feature_can_be_read_back_by_id(catalog_api: Api) -> None:
    created = _feature(catalog_api)

    reply = catalog_api.get(f"/v1/features/{created['id']}")

    assert reply.status == 200
    assert reply.body == created


def test_list_features_returns_every_feature_of_the_tenant_only(catalog_api: Api) -> None:
    first = _feature(catalog_api, "input")
    second = _feature(catalog_api, "output")
    other_tenant = catalog_api.post("/v1/features", token_feature("input"), tenant="tenant-b")
    assert other_tenant.status == 201

    reply = catalog_api.get("/v1/features")

    assert reply.status == 200
    assert [item["id"] for item in reply.body["items"]] == [first["id"], second["id"]]


def test_feature_with_a_taken_lookup_key_is_refused_with_409(catalog_api: Api) -> None:
    _feature(catalog_api)

    reply = catalog_api.post("/v1/features", token_feature("input"))

    assert reply.status == 409
    _assert_error(reply.body, "already_exists", 409, "lookup_key")


def test_unknown_feature_id_answers_404(catalog_api: Api) -> None:
    reply = catalog_api.get("/v1/features/feat_missing")

    assert reply.status == 404
    _assert_error(reply.body, "not_found", 404, "feat_missing")


def test_feature_summing_without_a_field_is_refused_with_400(catalog_api: Api) -> None:
    request = {**token_feature("input"), "aggregation": {"type": "SUM"}}

    reply = catalog_api.post("/v1/features", request)

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "aggregation")


# --- plans ----------------------------------------------------------------------------------


def test_create_plan_gives_each_price_a_price_id_and_amounts_as_strings(catalog_api: Api) -> None:
    feature = _feature(catalog_api)

    reply = catalog_api.post("/v1/plans", _plan_request([_package_price(feature["id"])]))

    assert reply.status == 201
    assert reply.body["id"].startswith("plan_")
    [price] = reply.body["prices"]
    assert price["id"].startswith("price_")
    assert price["amount"] == "15.00"
    assert price["package_size"] == "1000000"
    assert price["rounding"] == "up"


def test_plan_amounts_sent_as_json_numbers_come_back_as_exact_strings(catalog_api: Api) -> None:
    feature = _feature(catalog_api)
    body = (
        '{"name": "o1", "lookup_key": "o1", "currency": "USD", "prices": [{"feature_id": "'
        + feature["id"]
        + '", "billing_model": "PER_UNIT", "amount": 0.000015, "per": 1}]}'
    )

    reply = catalog_api.send("POST", "/v1/plans", body=body)

    assert reply.status == 201, reply.body
    assert reply.body["prices"][0]["amount"] == "0.000015"
    assert reply.body["prices"][0]["per"] == "1"


def test_plan_amounts_come_back_in_plain_notation(catalog_api: Api) -> None:
    feature = _feature(catalog_api)
    price = {
        "feature_id": feature["id"],
        "billing_model": "PER_UNIT",
        "amount": "0.0000001",
        "per": "1E+6",
    }

    reply = catalog_api.post("/v1/plans", _plan_request([price]))

    assert reply.status == 201, reply.body
    assert (reply.body["prices"][0]["amount"], reply.body["prices"][0]["per"]) == (
        "0.0000001",
        "1000000",
    )


def test_plan_accepts_per_unit_and_flat_fee_prices(catalog_api: Api) -> None:
    feature = _feature(catalog_api)
    prices = [
        {"feature_id": feature["id"], "billing_model": "PER_UNIT", "amount": "0.000015"},
        {"billing_model": "FLAT_FEE", "amount": "20.00"},
    ]

    created = catalog_api.post("/v1/plans", _plan_request(prices))
    read = catalog_api.get(f"/v1/plans/{created.body['id']}")

    assert created.status == 201, created.body
    assert read.status == 200
    assert read.body == created.body
    per_unit, flat_fee = read.body["prices"]
    assert (per_unit["billing_model"], per_unit["amount"], per_unit["per"]) == (
        "PER_UNIT",
        "0.000015",
        "1",
    )
    assert (flat_fee["billing_model"], flat_fee["amount"]) == ("FLAT_FEE", "20.00")
    assert flat_fee["feature_id"] is None
    assert per_unit["id"] != flat_fee["id"]


def test_plan_pricing_an_unknown_feature_is_refused_naming_the_price(catalog_api: Api) -> None:
    reply = catalog_api.post("/v1/plans", _plan_request([_package_price("feat_nope")]))

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "prices.0.feature_id")
    assert reply.body["details"][0]["field"] == "prices.0.feature_id"


def test_plan_pricing_another_tenants_feature_is_refused(catalog_api: Api) -> None:
    feature = _feature(catalog_api)

    reply = catalog_api.post(
        "/v1/plans", _plan_request([_package_price(feature["id"])]), tenant="tenant-b"
    )

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "prices.0.feature_id")


def test_plan_in_an_unknown_currency_is_refused_naming_currency(catalog_api: Api) -> None:
    feature = _feature(catalog_api)

    reply = catalog_api.post(
        "/v1/plans", _plan_request([_package_price(feature["id"])], currency="QQQ")
    )

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "currency")
    assert reply.body["details"][0]["field"] == "currency"


def test_unknown_plan_id_answers_404(catalog_api: Api) -> None:
    reply = catalog_api.get("/v1/plans/plan_missing")

    assert reply.status == 404
    _assert_error(reply.body, "not_found", 404, "plan_missing")


# --- customers ------------------------------------------------------------------------------


def test_create_customer_answers_201_with_a_cus_id_readable_by_id(catalog_api: Api) -> None:
    created = catalog_api.post(
        "/v1/customers", {"external_id": "acme-ai", "name": "Acme AI", "email": "a@acme.ai"}
    )

    read = catalog_api.get(f"/v1/customers/{created.body['id']}")

    assert created.status == 201
    assert created.body["id"].startswith("cus_")
    assert created.body["external_id"] == "acme-ai"
    assert read.status == 200
    assert read.body == created.body


def test_customer_with_a_taken_external_id_is_refused_with_409(catalog_api: Api) -> None:
    _customer(catalog_api, "acme-ai")

    reply = catalog_api.post("/v1/customers", {"external_id": "acme-ai", "name": "Other"})

    assert reply.status == 409
    _assert_error(reply.body, "already_exists", 409, "external_id")


def test_same_external_id_in_two_tenants_makes_two_customers(catalog_api: Api) -> None:
    mine = _customer(catalog_api, "acme-ai")

    theirs = catalog_api.post(
        "/v1/customers", {"external_id": "acme-ai", "name": "Acme"}, tenant="tenant-b"
    )

    assert theirs.status == 201
    assert theirs.body["id"] != mine["id"]
    assert catalog_api.get(f"/v1/customers/{theirs.body['id']}").status == 404


# --- subscriptions --------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["customer_id", "external_customer_id"])
def test_subscription_can_name_its_customer_either_way(catalog_api: Api, reference: str) -> None:
    customer = _customer(catalog_api)
    plan = _plan(catalog_api, _feature(catalog_api)["id"])
    value = customer["id"] if reference == "customer_id" else customer["external_id"]

    created = catalog_api.post("/v1/subscriptions", {reference: value, "plan_id": plan["id"]})
    read = catalog_api.get(f"/v1/subscriptions/{created.body.get('id')}")

    assert created.status == 201, created.body
    assert created.body["id"].startswith("sub_")
    assert created.body["status"] == "active"
    assert created.body["customer_id"] == customer["id"]
    assert created.body["external_customer_id"] == "acme-ai"
    assert created.body["plan_id"] == plan["id"]
    assert read.status == 200
    assert read.body == created.body


def test_subscription_period_is_one_month_anchored_at_its_start_date(catalog_api: Api) -> None:
    customer = _customer(catalog_api)
    plan = _plan(catalog_api, _feature(catalog_api)["id"])
    request = {
        "customer_id": customer["id"],
        "plan_id": plan["id"],
        "start_date": "2030-01-31T09:30:00+02:00",
    }

    reply = catalog_api.post("/v1/subscriptions", request)

    assert reply.status == 201, reply.body
    assert reply.body["start_date"] == "2030-01-31T07:30:00Z"
    assert reply.body["current_period_start"] == "2030-01-31T07:30:00Z"
    # One calendar month from January 31 clamps to the last day of February.
    assert reply.body["current_period_end"] == "2030-02-28T07:30:00Z"


@pytest.mark.parametrize(
    "reference",
    [{}, {"customer_id": "cus_x", "external_customer_id": "acme-ai"}],
    ids=["neither", "both"],
)
def test_subscription_must_name_exactly_one_customer_reference(
    catalog_api: Api, reference: dict[str, str]
) -> None:
    plan = _plan(catalog_api, _feature(catalog_api)["id"])

    reply = catalog_api.post("/v1/subscriptions", {**reference, "plan_id": plan["id"]})

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "external_customer_id")
    assert "customer_id" in reply.body["message"]


def test_subscription_to_an_unknown_plan_answers_404(catalog_api: Api) -> None:
    _customer(catalog_api)

    reply = catalog_api.post(
        "/v1/subscriptions", {"external_customer_id": "acme-ai", "plan_id": "plan_nope"}
    )

    assert reply.status == 404
    _assert_error(reply.body, "not_found", 404, "plan_id")


def test_subscription_for_an_unknown_customer_answers_404(catalog_api: Api) -> None:
    plan = _plan(catalog_api, _feature(catalog_api)["id"])

    reply = catalog_api.post(
        "/v1/subscriptions", {"external_customer_id": "nobody", "plan_id": plan["id"]}
    )

    assert reply.status == 404
    _assert_error(reply.body, "not_found", 404, "external_customer_id")


@pytest.mark.parametrize(
    "start_date",
    ["yesterday", "2030-02-30T00:00:00Z", 1767225600, "9999-12-15T00:00:00Z"],
    ids=["text", "no-such-day", "epoch-number", "no-room-for-a-period"],
)
def test_subscription_with_an_invalid_start_date_is_refused(
    catalog_api: Api, start_date: object
) -> None:
    _customer(catalog_api)
    plan = _plan(catalog_api, _feature(catalog_api)["id"])
    request = {"external_customer_id": "acme-ai", "plan_id": plan["id"], "start_date": start_date}

    reply = catalog_api.post("/v1/subscriptions", request)

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "start_date")


# --- requests the catalog cannot read -------------------------------------------------------


@pytest.mark.parametrize("body", ['{"name": ', "", "not json"], ids=["cut", "empty", "text"])
def test_body_that_is_not_json_is_refused_with_400(catalog_api: Api, body: str) -> None:
    reply = catalog_api.send("POST", "/v1/features", body=body)

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "JSON")
    assert reply.body["details"] == [{"field": "body"}]


@pytest.mark.parametrize("body", ["[]", '"feature"', "42", "null"])
def test_body_that_is_not_a_json_object_is_refused_with_400(catalog_api: Api, body: str) -> None:
    reply = catalog_api.send("POST", "/v1/customers", body=body)

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "object")


def test_unknown_body_field_is_refused_naming_it(catalog_api: Api) -> None:
    request = {"external_id": "acme-ai", "name": "Acme", "plan": "gold"}

    reply = catalog_api.post("/v1/customers", request)

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, "plan")
    assert reply.body["details"] == [{"field": "plan", "message": "is not a known field"}]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/features", None),
        ("POST", "/v1/customers", '{"external_id": "acme-ai", "name": "Acme"}'),
    ],
)
def test_request_without_a_tenant_from_the_authorizer_answers_401(
    catalog_api: Api, method: str, path: str, body: str | None
) -> None:
    reply = catalog_api.send(method, path, body=body, tenant=None)

    assert reply.status == 401
    _assert_error(reply.body, "unauthorized", 401, "x-api-key")


def test_unknown_route_answers_404_in_json(catalog_api: Api) -> None:
    reply = catalog_api.get("/v1/invoices")

    assert reply.status == 404
    assert reply.headers["Content-Type"] == "application/json"
    _assert_error(reply.body, "not_found", 404, "/v1/invoices")


# --- settings -------------------------------------------------------------------------------


def test_settings_start_at_the_defaults_and_read_back_what_was_put(catalog_api: Api) -> None:
    before = catalog_api.get("/v1/settings")
    changed = {"invoice_grace_period_seconds": 600, "backdating_limit_days": 7}

    put = catalog_api.send("PUT", "/v1/settings", body=json.dumps(changed))
    after = catalog_api.get("/v1/settings")

    assert before.body == {"invoice_grace_period_seconds": 3600, "backdating_limit_days": 35}
    assert put.status == after.status == 200
    assert put.body == after.body == changed


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"invoice_grace_period_seconds": -1}, "invoice_grace_period_seconds"),
        ({"backdating_limit_days": 0}, "backdating_limit_days"),
        ({"backdating_limit_days": 367}, "backdating_limit_days"),
        ({"backdating_days": 3}, "backdating_days"),
    ],
)
def test_settings_out_of_range_or_unknown_are_refused_naming_the_field(
    catalog_api: Api, settings: dict[str, Any], field: str
) -> None:
    reply = catalog_api.send("PUT", "/v1/settings", body=json.dumps(settings))

    assert reply.status == 400
    _assert_error(reply.body, "validation_error", 400, field)
    assert catalog_api.get("/v1/settings").body["backdating_limit_days"] == 35
