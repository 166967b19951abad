"""Calling an HTTP handler the way API Gateway does, with route keys taken from template.yaml."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterbill.local.template import HttpRoute
from tests.conftest import Handler, api_event, lambda_context

TENANT = "tenant-a"


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


class Api:
    """One function's HTTP routes. A path no route serves still reaches the handler, so that
    its own not-found answer can be checked."""

    def __init__(self, handler: Handler, routes: list[HttpRoute]) -> None:
        self._handler = handler
        self._routes = routes

    def get(self, path: str, query: str = "", tenant: str | None = TENANT) -> Reply:
        return self.send("GET", path, query=query, tenant=tenant)

    def post(self, path: str, payload: Any, tenant: str | None = TENANT) -> Reply:
        return self.send("POST", path, body=json.dumps(payload), tenant=tenant)

    def send(
        self,
        method: str,
        path: str,
        body: str | None = None,
        query: str = "",
        tenant: str | None = TENANT,
    ) -> Reply:
        route, parameters = self._route(method, path)
        event = api_event(
            method,
            path,
            route=route,
            body=body,
            query=query,
            tenant=tenant,
            path_parameters=parameters,
        )
        result = self._handler(event, lambda_context())
        return Reply(
            status=result["statusCode"],
            body=json.loads(result["body"], parse_float=Decimal),
            headers=result.get("headers") or {},
        )

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str] | None]:
        for route in self._routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return route.path, parameters or None
        return path, None
