"""A small JSON client for the HTTP API, used by the demo and the end-to-end tests."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

__all__ = ["ApiClient", "ApiResponse"]


class ApiResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body

    def __repr__(self) -> str:
        return f"ApiResponse({self.status}, {self.body!r})"


class ApiClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        timeout: float = 30.0,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.extra_headers = extra_headers or {}

    def get(self, path: str) -> ApiResponse:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> ApiResponse:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: Any = None) -> ApiResponse:
        data = None if body is None else json.dumps(body, default=str).encode()
        headers = {"Content-Type": "application/json", **self.extra_headers}
        if self.api_key:
            headers["x-api-key"] = self.api_key
        request = Request(self.base_url + path, data=data, method=method, headers=headers)
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return ApiResponse(response.status, _parse(response.read()))
        except HTTPError as error:
            return ApiResponse(error.code, _parse(error.read()))


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    return json.loads(raw, parse_float=Decimal)
