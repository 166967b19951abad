"""API keys (hashed, revocable, recognisable) and the input and rate limits of ingest."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from meterbill.keys import (
    SECRET_PREFIX,
    create_api_key,
    hash_secret,
    list_api_keys,
    revoke_api_key,
    tenant_for_secret,
)
from meterbill.storage import Store
from tests.conftest import Handler, api_event, lambda_context


def test_a_new_key_is_long_random_prefixed_and_stored_only_as_a_hash(store: Store) -> None:
    issued = create_api_key(store, "acme", "ci")

    assert issued.secret.startswith(SECRET_PREFIX)
    assert len(issued.secret) - len(SECRET_PREFIX) >= 43  # 32 random bytes, url-safe base64
    raw = store.client.scan(TableName=store.table_name)["Items"]
    assert issued.secret not in json.dumps(raw)
    assert hash_secret(issued.secret) in json.dumps(raw)


def test_listing_shows_prefix_name_and_last_use_but_never_the_secret(store: Store) -> None:
    issued = create_api_key(store, "acme", "ci")
    tenant_for_secret(store, issued.secret)

    [listed] = list_api_keys(store, "acme")

    assert listed.key_id == issued.key_id
    assert issued.secret.startswith(listed.prefix)
    assert listed.name == "ci"
    assert listed.last_used_day is not None
    assert listed.secret_hash == ""


def test_a_revoked_key_resolves_to_no_tenant(store: Store) -> None:
    issued = create_api_key(store, "acme", "ci")
    assert tenant_for_secret(store, issued.secret) == "acme"

    revoke_api_key(store, issued.key_id)

    assert tenant_for_secret(store, issued.secret) is None
    assert list_api_keys(store, "acme")[0].revoked_at is not None


def test_keys_of_one_tenant_are_not_listed_for_another(store: Store) -> None:
    create_api_key(store, "acme", "ci")

    assert list_api_keys(store, "globex") == []


@pytest.fixture
def ingest(store: Store, load_handler: Callable[[str], Handler]) -> Callable[[str, Any], Any]:
    handler = load_handler("IngestFunction")

    def post(path: str, body: Any) -> dict[str, Any]:
        event = api_event("POST", path, body=json.dumps(body))
        return handler(event, lambda_context())

    return post


def _event(**properties: Any) -> dict[str, Any]:
    return {"event_name": "api.call", "external_customer_id": "c1", "properties": properties}


def test_a_property_value_over_1024_characters_is_refused(ingest: Any) -> None:
    response = ingest("/v1/events", _event(prompt="x" * 1025))

    assert response["statusCode"] == 400
    assert "properties.prompt" in json.loads(response["body"])["message"]


def test_more_than_100_properties_are_refused(ingest: Any) -> None:
    response = ingest("/v1/events", _event(**{f"p{i}": i for i in range(101)}))

    assert response["statusCode"] == 400
    assert "properties" in json.loads(response["body"])["message"]


def test_an_event_id_over_255_characters_is_refused(ingest: Any) -> None:
    response = ingest("/v1/events", {**_event(), "event_id": "e" * 256})

    assert response["statusCode"] == 400
    assert "event_id" in json.loads(response["body"])["message"]


def test_a_tenant_over_its_ingest_rate_gets_429_with_retry_after(
    ingest: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterbill import settings

    monkeypatch.setenv("INGEST_RATE_LIMIT", "2")
    settings.settings.cache_clear()

    # Ten requests take far less than a second, so some one-second window sees a third.
    responses = [ingest("/v1/events", _event()) for _ in range(10)]

    refused = [r for r in responses if r["statusCode"] == 429]
    assert refused, [r["statusCode"] for r in responses]
    assert {r["statusCode"] for r in responses} == {202, 429}
    first_refusal = refused[0]
    assert first_refusal["headers"]["Retry-After"] == "1"
    body = json.loads(first_refusal["body"])
    assert (body["code"], body["http_status_code"]) == ("rate_limited", 429)
