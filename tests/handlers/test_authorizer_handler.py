"""The authorizer function: an `x-api-key` header resolves to its tenant, or the request is
refused (HTTP API simple responses)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from meterbill.keys import create_api_key
from meterbill.local.lambda_events import http_authorizer_event
from meterbill.storage import Store
from tests.conftest import Handler, lambda_context

ROUTE = "POST /v1/events/bulk"


@pytest.fixture
def authorize(store: Store, load_handler: Callable[[str], Handler]) -> Handler:
    return load_handler("AuthorizerFunction")


def test_valid_key_is_authorized_with_its_tenant_in_the_context(
    authorize: Handler, api_key: str
) -> None:
    event = http_authorizer_event(ROUTE, {"x-api-key": api_key})

    answer = authorize(event, lambda_context("authorizer"))

    assert answer == {"isAuthorized": True, "context": {"tenant_id": "tenant-a"}}


def test_each_key_resolves_to_its_own_tenant(
    authorize: Handler, store: Store, api_key: str
) -> None:
    other_key = create_api_key(store, "tenant-b", "tests").secret

    answer = authorize(http_authorizer_event(ROUTE, {"X-Api-Key": other_key}), lambda_context())

    assert answer["isAuthorized"] is True
    assert answer["context"] == {"tenant_id": "tenant-b"}


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "mb_live_" + "x" * 43},
        {"x-api-key": ""},
        {"x-api-key": "k" * 10_000},
        {},
        {"authorization": "Bearer something"},
    ],
    ids=["unknown-key", "empty-key", "oversized-key", "no-header", "other-header"],
)
def test_request_without_a_known_key_is_not_authorized(
    authorize: Handler, api_key: str, headers: dict[str, str]
) -> None:
    answer = authorize(http_authorizer_event(ROUTE, headers), lambda_context())

    assert answer == {"isAuthorized": False}


def test_key_of_a_near_miss_is_not_authorized(authorize: Handler, api_key: str) -> None:
    near_miss = api_key[:-1] + ("a" if api_key[-1] != "a" else "b")

    answer = authorize(http_authorizer_event(ROUTE, {"x-api-key": near_miss}), lambda_context())

    assert answer == {"isAuthorized": False}
