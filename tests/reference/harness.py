"""Driving the real pipeline over HTTP for the reference tests: tenants, JSON, case counts.

Requests go through `LocalRuntime.handle_http`, so they pass the authorizer, the routing of
template.yaml and the same handlers Lambda runs; usage reaches the counters through the stream
pump and the aggregator. Nothing here knows how the pipeline computes anything.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import settings

from meterbill import runtime as meterbill_runtime
from meterbill import settings as meterbill_settings
from meterbill.keys import create_api_key
from meterbill.local.runtime import LocalRuntime
from meterbill.runtime import store

__all__ = [
    "PASSED_CASES",
    "PROFILE",
    "Api",
    "Reply",
    "RuntimePool",
    "examples",
    "json_text",
    "new_tenant",
]

settings.register_profile("long", max_examples=2000, deadline=None)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")

# Generated cases that agreed with the reference model, per test; printed by conftest.py.
PASSED_CASES: Counter[str] = Counter()

_tenants = itertools.count()
_RAW_NUMBER = re.compile(r'"\\u0000number:([^"\\]+)\\u0000"')


def examples(default: int) -> int:
    """A test's example budget: `default`, or the chosen profile's (`HYPOTHESIS_PROFILE`)."""
    if PROFILE == "default":
        return default
    return settings.get_profile(PROFILE).max_examples


def json_text(value: Any) -> str:
    """JSON with Decimals written as the JSON numbers they are (`200.0`, `2E+2`), not floats."""

    def tag(item: Any) -> Any:
        if isinstance(item, Decimal):
            return f"\x00number:{item}\x00"
        if isinstance(item, dict):
            return {key: tag(inner) for key, inner in item.items()}
        if isinstance(item, list | tuple):
            return [tag(inner) for inner in item]
        return item

    return _RAW_NUMBER.sub(lambda match: match.group(1), json.dumps(tag(value)))


@dataclass
class Reply:
    status: int
    body: Any


class Api:
    """One tenant's view of the API: `call(method, path, body)` with its key."""

    def __init__(self, runtime: LocalRuntime, key: str) -> None:
        self.runtime = runtime
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> Reply:
        path, _, query = path.partition("?")
        payload = None if body is None else json_text(body)
        headers = {"x-api-key": self.key, "content-type": "application/json"}
        response = self.runtime.handle_http(method, path, query, headers, payload)
        parsed = json.loads(response.body, parse_float=Decimal) if response.body else None
        return Reply(response.status, parsed)

    def create(self, path: str, body: Any) -> dict[str, Any]:
        reply = self.call("POST", path, body)
        assert reply.status == 201, (path, body, reply)
        created: dict[str, Any] = reply.body
        return created

    def get(self, path: str) -> dict[str, Any]:
        reply = self.call("GET", path)
        assert reply.status == 200, (path, reply)
        found: dict[str, Any] = reply.body
        return found


def new_tenant(runtime: LocalRuntime) -> Api:
    """A tenant of its own, so that generated cases never see each other's data."""
    tenant = f"ref-{next(_tenants)}-{uuid.uuid4().hex[:8]}"
    secret = f"mb_live_reference_{uuid.uuid4().hex}"
    create_api_key(store(), tenant, "reference", secret)
    return Api(runtime, secret)


class RuntimePool:
    """One local runtime at a time, replaced by a fresh one every `cases_per_runtime` cases.

    moto answers some DynamoDB reads (index queries) by walking the whole table, so a table
    that keeps every generated case makes each case slower than the one before. Tenants never
    share data anyway; a fresh table every few dozen cases keeps the cost per case flat.
    """

    def __init__(self, project_root: Path, table_name: str, cases_per_runtime: int = 20) -> None:
        self.project_root = project_root
        self.table_name = table_name
        self.cases_per_runtime = cases_per_runtime
        self._runtime: LocalRuntime | None = None
        self._cases = 0

    def for_case(self) -> LocalRuntime:
        if self._runtime is None or self._cases >= self.cases_per_runtime:
            self.stop()
            # Clients cached by meterbill belong to the previous moto mock: start clean.
            meterbill_settings.settings.cache_clear()
            meterbill_runtime.store.cache_clear()
            meterbill_runtime.publisher.cache_clear()
            self._runtime = LocalRuntime(self.project_root, table_name=self.table_name)
            self._runtime.start()
            self._cases = 0
        self._cases += 1
        return self._runtime

    def stop(self) -> None:
        if self._runtime is not None:
            self._runtime.stop()
            self._runtime = None
