from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from meterbill.models import EventRequest, FeatureCreate, PlanCreate
from meterbill.validation import error_details


def feature_body(**aggregation: Any) -> dict[str, Any]:
    return {
        "name": "Input tokens",
        "lookup_key": "o1_input",
        "event_name": "llm.completion",
        "aggregation": aggregation,
    }


def plan_body(*prices: dict[str, Any], currency: str = "USD") -> dict[str, Any]:
    return {"name": "o1", "lookup_key": "o1", "currency": currency, "prices": list(prices)}


def package_price(**overrides: Any) -> dict[str, Any]:
    return {
        "billing_model": "PACKAGE",
        "feature_id": "feat_o1_input",
        "amount": "15.00",
        "package_size": 1_000_000,
    } | overrides


def event_body(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_name": "llm.completion",
        "external_customer_id": "acme",
        "properties": properties,
    }


def details(model: type[Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return error_details(caught.value)


def test_feature_create_sum_requires_a_field():
    assert details(FeatureCreate, feature_body(type="SUM")) == [
        {
            "field": "aggregation",
            "message": "aggregation.field is required for SUM: name the numeric property",
        }
    ]


def test_feature_create_sum_keeps_its_field():
    feature = FeatureCreate.model_validate(feature_body(type="SUM", field="input_tokens"))

    assert feature.aggregation.field == "input_tokens"


def test_feature_create_count_forbids_a_field():
    assert details(FeatureCreate, feature_body(type="COUNT", field="input_tokens")) == [
        {"field": "aggregation", "message": "aggregation.field must be omitted for COUNT"}
    ]


def test_feature_create_writes_filter_values_as_sorted_canonical_text():
    body = feature_body(type="COUNT") | {"filters": {"max_tokens": [200, "2E+2", True, "o1"]}}

    feature = FeatureCreate.model_validate(body)

    assert feature.filters == {"max_tokens": ["200", "o1", "true"]}


def test_feature_create_rejects_a_filter_without_allowed_values():
    body = feature_body(type="COUNT") | {"filters": {"model": []}}

    assert details(FeatureCreate, body) == [
        {"field": "filters", "message": "filter 'model' needs at least one allowed value"}
    ]


def test_plan_create_rejects_an_unknown_currency():
    assert details(PlanCreate, plan_body(package_price(), currency="XYZ")) == [
        {"field": "currency", "message": "must be an ISO 4217 currency code such as USD"}
    ]


def test_plan_create_writes_a_lowercase_currency_in_uppercase():
    plan = PlanCreate.model_validate(plan_body(package_price(), currency="eur"))

    assert plan.currency == "EUR"


def test_plan_create_accepts_amounts_with_12_decimal_places():
    plan = PlanCreate.model_validate(plan_body(package_price(amount="0.000000000015")))

    assert plan.prices[0].amount == Decimal("0.000000000015")


def test_plan_create_rejects_amounts_with_more_than_12_decimal_places():
    body = plan_body(package_price(amount="0.0000000000015"))

    assert details(PlanCreate, body) == [
        {"field": "prices.0.amount", "message": "must have at most 12 decimal places"}
    ]


def test_plan_create_package_price_rounds_up_by_default():
    plan = PlanCreate.model_validate(plan_body(package_price()))

    assert plan.prices[0].model_dump()["rounding"] == "up"


@pytest.mark.parametrize("package_size", [0, -1_000_000])
def test_plan_create_rejects_a_package_size_that_is_not_positive(package_size):
    body = plan_body(package_price(package_size=package_size))

    assert details(PlanCreate, body) == [
        {"field": "prices.0.package_size", "message": "input should be greater than 0"}
    ]


def test_plan_create_requires_a_package_size_for_a_package_price():
    price = package_price()
    del price["package_size"]

    assert details(PlanCreate, plan_body(price)) == [
        {"field": "prices.0.package_size", "message": "is required"}
    ]


def test_error_details_name_a_bad_price_amount_by_its_index_without_branch_names():
    body = plan_body(
        package_price(), {"billing_model": "PER_UNIT", "feature_id": "f", "amount": "x"}
    )

    assert details(PlanCreate, body) == [
        {"field": "prices.1.amount", "message": "input should be a valid decimal"}
    ]


def test_error_details_name_a_negative_first_price_amount():
    assert details(PlanCreate, plan_body(package_price(amount="-15.00"))) == [
        {"field": "prices.0.amount", "message": "input should be greater than or equal to 0"}
    ]


@pytest.mark.parametrize("value", [{"provider": "openai"}, ["o1"], None])
def test_event_request_rejects_a_property_that_is_not_a_scalar(value):
    body = event_body({"input_tokens": 1200, "model": value})

    assert details(EventRequest, body) == [
        {"field": "properties.model", "message": "must be a string, a number or a boolean"}
    ]


def test_event_request_keeps_strings_numbers_and_booleans():
    body = event_body({"model": "o1", "input_tokens": 1200, "cost": Decimal("0.5"), "cached": True})

    event = EventRequest.model_validate(body)

    assert event.properties == {
        "model": "o1",
        "input_tokens": 1200,
        "cost": Decimal("0.5"),
        "cached": True,
    }
    assert type(event.properties["input_tokens"]) is int
    assert type(event.properties["cached"]) is bool


def test_event_request_rejects_a_number_dynamodb_cannot_store():
    body = event_body({"input_tokens": Decimal("1" * 39)})

    assert details(EventRequest, body) == [
        {
            "field": "properties",
            "message": "property 'input_tokens' is not a finite number of at most 38 digits",
        }
    ]
