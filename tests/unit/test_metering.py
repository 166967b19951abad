from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterbill.metering import contribution, matches, missing_values
from meterbill.models import Feature, FeatureCreate

EVENT_NAME = "llm.completion"


def make_feature(
    aggregation: dict[str, Any] | None = None,
    filters: dict[str, list[Any]] | None = None,
    event_name: str = EVENT_NAME,
    lookup_key: str = "input_tokens",
) -> Feature:
    """A feature as the catalog stores it: through FeatureCreate, so filters are canonical."""
    request = FeatureCreate.model_validate(
        {
            "name": "Input tokens",
            "lookup_key": lookup_key,
            "event_name": event_name,
            "aggregation": aggregation or {"type": "SUM", "field": "input_tokens"},
            "filters": filters or {},
        }
    )
    return Feature(
        id=f"feat_{lookup_key}", created_at=datetime(2026, 1, 1, tzinfo=UTC), **request.model_dump()
    )


def test_matches_rejects_an_event_with_another_name():
    feature = make_feature()

    assert not matches(feature, "llm.embedding", {"input_tokens": 10})


def test_matches_accepts_an_event_with_the_same_name_when_there_are_no_filters():
    feature = make_feature()

    assert matches(feature, EVENT_NAME, {})


def test_matches_requires_every_filter_to_match():
    feature = make_feature(filters={"model": ["o1"], "region": ["eu"]})

    assert matches(feature, EVENT_NAME, {"model": "o1", "region": "eu"})
    assert not matches(feature, EVENT_NAME, {"model": "o1", "region": "us"})
    assert not matches(feature, EVENT_NAME, {"model": "gpt-4o", "region": "eu"})


def test_matches_accepts_any_of_the_allowed_values():
    feature = make_feature(filters={"model": ["o1", "o1-mini"]})

    assert matches(feature, EVENT_NAME, {"model": "o1-mini"})


def test_matches_never_matches_a_missing_property():
    feature = make_feature(filters={"cached": [False]})

    assert not matches(feature, EVENT_NAME, {"input_tokens": 10})


@pytest.mark.parametrize("value", [200, "200", Decimal("200.0"), "2E+2", "200.00"])
def test_matches_compares_numeric_filter_values_as_canonical_text(value):
    feature = make_feature(filters={"max_tokens": [Decimal("2.0E+2")]})

    assert matches(feature, EVENT_NAME, {"max_tokens": value})


@pytest.mark.parametrize(("value", "expected"), [(True, True), ("true", True), ("True", False)])
def test_matches_compares_boolean_filter_values_as_lowercase_text(value, expected):
    feature = make_feature(filters={"cached": [True]})

    assert matches(feature, EVENT_NAME, {"cached": value}) is expected


def test_matches_compares_other_strings_exactly():
    feature = make_feature(filters={"model": ["o1"]})

    assert not matches(feature, EVENT_NAME, {"model": "O1"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (5_000_000, Decimal(5_000_000)),
        ("5000000", Decimal(5_000_000)),
        (Decimal("0.000015"), Decimal("0.000015")),
        ("1E+3", Decimal(1000)),
    ],
)
def test_contribution_of_a_sum_is_the_exact_value_of_its_field(value, expected):
    feature = make_feature()

    assert contribution(feature, {"input_tokens": value}) == expected


def test_contribution_of_a_count_is_one_whatever_the_properties():
    feature = make_feature(aggregation={"type": "COUNT"})

    assert contribution(feature, {"input_tokens": 5_000_000}) == 1
    assert contribution(feature, {}) == 1


@pytest.mark.parametrize(
    "properties", [{}, {"input_tokens": "many"}, {"input_tokens": True}, {"tokens": 10}]
)
def test_contribution_of_a_sum_without_a_numeric_value_is_none(properties):
    feature = make_feature()

    assert contribution(feature, properties) is None


def test_missing_values_reports_the_property_and_the_feature_that_sums_it():
    summed = make_feature(lookup_key="input_tokens")
    counted = make_feature(aggregation={"type": "COUNT"}, lookup_key="requests")

    errors = missing_values([summed, counted], EVENT_NAME, {"input_tokens": "lots"})

    assert [(error.feature, error.property_name) for error in errors] == [(summed, "input_tokens")]
    sentence = errors[0].sentence()
    assert "'input_tokens'" in sentence
    assert summed.id in sentence


def test_missing_values_names_the_feature_by_lookup_key_in_its_sentence():
    feature = make_feature(
        aggregation={"type": "SUM", "field": "output_tokens"}, lookup_key="o1_output"
    )

    errors = missing_values([feature], EVENT_NAME, {})

    assert len(errors) == 1
    assert "'output_tokens'" in errors[0].sentence()
    assert "'o1_output'" in errors[0].sentence()


def test_missing_values_ignores_features_the_event_does_not_match():
    feature = make_feature(filters={"model": ["o1"]})

    assert missing_values([feature], EVENT_NAME, {"model": "gpt-4o"}) == []
    assert missing_values([feature], "llm.embedding", {}) == []


def test_missing_values_is_empty_for_a_valid_event():
    feature = make_feature()

    assert missing_values([feature], EVENT_NAME, {"input_tokens": "1200"}) == []


# Property values as events send them, each with the text a filter compares, written out by hand.
VALUES = [
    ("o1", "o1"),
    ("O1", "O1"),
    ("gpt-4o", "gpt-4o"),
    (200, "200"),
    ("200", "200"),
    (Decimal("200.0"), "200"),
    ("2E+2", "200"),
    (Decimal("0.5"), "0.5"),
    ("0.50", "0.5"),
    (True, "true"),
    ("true", "true"),
    ("True", "True"),
    (False, "false"),
    (0, "0"),
]
PROPERTY_NAMES = ["model", "region", "cached", "max_tokens"]
EVENT_NAMES = ["llm.completion", "llm.embedding"]

values = st.sampled_from(VALUES)
filters = st.dictionaries(
    st.sampled_from(PROPERTY_NAMES), st.lists(values, min_size=1, max_size=3), max_size=3
)
properties = st.dictionaries(st.sampled_from(PROPERTY_NAMES), values, max_size=4)


@settings(max_examples=300)
@given(st.sampled_from(EVENT_NAMES), filters, st.sampled_from(EVENT_NAMES), properties)
def test_an_event_matches_when_its_name_and_every_filter_agree(
    feature_event, feature_filters, event_name, event_properties
):
    feature = make_feature(
        event_name=feature_event,
        filters={prop: [raw for raw, _ in allowed] for prop, allowed in feature_filters.items()},
    )
    sent = {prop: raw for prop, (raw, _) in event_properties.items()}

    expected = feature_event == event_name and all(
        prop in event_properties and event_properties[prop][1] in [text for _, text in allowed]
        for prop, allowed in feature_filters.items()
    )
    assert matches(feature, event_name, sent) is expected
