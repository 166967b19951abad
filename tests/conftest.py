"""Shared fixtures: a moto table built from template.yaml, handlers loaded as Lambda loads them."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from meterbill import runtime, settings
from meterbill.keys import create_api_key
from meterbill.local.lambda_events import FakeLambdaContext, http_api_event
from meterbill.local.template import Template
from meterbill.storage import Store

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TABLE_NAME = "meterbill-test"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture(scope="session")
def template() -> Template:
    return Template(PROJECT_ROOT / "template.yaml")


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and the table name; nothing in a test may reach a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": TABLE_NAME,
        "INGEST_WRITE_CONCURRENCY": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.settings.cache_clear()
    runtime.store.cache_clear()


@pytest.fixture
def store(template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """An empty table and the template's queues, created from template.yaml, inside moto.

    Each function finds a queue through the environment variable the template gives it
    (`CLOSE_QUEUE_URL`), set here to the queue's URL in moto.
    """
    with mock_aws():
        import boto3

        boto3.client("dynamodb").create_table(**template.table_definition(TABLE_NAME))
        for variable, url in _queue_variables(template).items():
            monkeypatch.setenv(variable, url)
        yield runtime.store()


def _queue_variables(template: Template) -> dict[str, str]:
    """Environment variables of the template's functions that name a queue, with its URL."""
    import boto3

    sqs = boto3.client("sqs")
    urls = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in template.queues()}
    variables = {}
    for properties in template.functions().values():
        for name, value in ((properties.get("Environment") or {}).get("Variables") or {}).items():
            if isinstance(value, dict) and value.get("Ref") in urls:
                variables[name] = urls[value["Ref"]]
    return variables


@pytest.fixture
def api_key(store: Store) -> str:
    return create_api_key(store, "tenant-a", "tests").secret


@pytest.fixture(scope="session")
def load_handler(template: Template) -> Callable[[str], Handler]:
    """Import a function's handler the way Lambda does: from its CodeUri, by its Handler."""
    loaded: dict[str, Handler] = {}

    def load(function: str) -> Handler:
        if function not in loaded:
            source, attribute = template.handler_file(function)
            name = f"test_function_{function}"
            spec = importlib.util.spec_from_file_location(name, source)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            loaded[function] = getattr(module, attribute)
        return loaded[function]

    return load


def lambda_context(function: str = "test") -> FakeLambdaContext:
    return FakeLambdaContext(function_name=function)


def api_event(
    method: str,
    path: str,
    route: str | None = None,
    body: str | None = None,
    query: str = "",
    tenant: str | None = "tenant-a",
    path_parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An HTTP API v2 event as API Gateway sends it after the authorizer let it through."""
    return http_api_event(
        method,
        path,
        f"{method} {route or path}",
        query=query,
        body=body,
        path_parameters=path_parameters,
        authorizer_context=None if tenant is None else {"tenant_id": tenant},
    )
