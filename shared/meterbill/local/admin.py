"""Local administration: how `meterbill keys` (and other commands) reach a running serve.

`meterbill serve` writes a discovery file (`~/.meterbill/serve.json`, or under
`$METERBILL_STATE_DIR`) with its URL and a random admin token, readable only by its user, and
removes it when it stops. Admin requests go to `/_local/...` with that token in
`x-meterbill-admin`; these routes exist only in the local server, never on AWS.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from meterbill.errors import MeterbillError, NotFound, Unauthorized, ValidationFailed
from meterbill.keys import create_api_key, list_api_keys, revoke_api_key
from meterbill.periods import parse_instant
from meterbill.recount import describe, reconcile_customer
from meterbill.storage import Store

__all__ = ["ADMIN_HEADER", "AdminApi", "discovery_file", "read_discovery", "write_discovery"]

ADMIN_HEADER = "x-meterbill-admin"
ADMIN_PREFIX = "/_local/"


def discovery_file() -> Path:
    base = os.environ.get("METERBILL_STATE_DIR") or str(Path.home() / ".meterbill")
    return Path(base) / "serve.json"


def write_discovery(url: str, token: str) -> Path:
    path = discovery_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"url": url, "admin_token": token, "pid": os.getpid()}, handle)
    return path


def read_discovery() -> dict[str, Any]:
    path = discovery_file()
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no running `meterbill serve` found ({path} is missing); start one, or pass --table"
        ) from None
    return data


class AdminApi:
    """Answers `/_local/` requests against the embedded table."""

    def __init__(self, store: Store, close_periods: Any = None) -> None:
        self.token = secrets.token_urlsafe(32)
        self._store = store
        self._close_periods = close_periods

    def handles(self, path: str) -> bool:
        return path.startswith(ADMIN_PREFIX)

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: str | None
    ) -> tuple[int, dict[str, Any]]:
        try:
            self._authenticate(headers)
            return self._route(method, path.removeprefix(ADMIN_PREFIX), query, body)
        except MeterbillError as exc:
            return exc.http_status, exc.to_body()
        except ValueError as exc:
            error = ValidationFailed(str(exc))
            return error.http_status, error.to_body()

    def _authenticate(self, headers: dict[str, str]) -> None:
        presented = {k.lower(): v for k, v in headers.items()}.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(presented.encode(), self.token.encode()):
            raise Unauthorized(f"{ADMIN_HEADER} is missing or wrong")

    def _route(
        self, method: str, path: str, query: str, body: str | None
    ) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["keys"]:
            request = json.loads(body or "{}")
            issued = create_api_key(
                self._store, str(request.get("tenant", "")), str(request.get("name", "default"))
            )
            return 201, asdict(issued)
        if method == "GET" and parts == ["keys"]:
            tenant = parse_qs(query).get("tenant", [""])[0]
            keys = list_api_keys(self._store, tenant)
            return 200, {"items": [_public(asdict(key)) for key in keys]}
        if method == "POST" and parts == ["reconcile"]:
            request = json.loads(body or "{}")
            at = parse_instant(request["at"]) if request.get("at") else datetime.now(UTC)
            differences = reconcile_customer(
                self._store,
                str(request["tenant_id"]),
                str(request["customer_id"]),
                at,
                repair=bool(request.get("repair")),
            )
            return 200, {"differences": [describe(d) for d in differences]}
        if method == "POST" and parts == ["close-periods"] and self._close_periods is not None:
            request = json.loads(body or "{}")
            now = parse_instant(request["now"]) if request.get("now") else None
            return 200, dict(self._close_periods(now))
        if method == "POST" and len(parts) == 3 and parts[0] == "keys" and parts[2] == "revoke":
            return 200, _public(asdict(revoke_api_key(self._store, parts[1])))
        raise NotFound(f"no admin route {method} /_local/{path}")


def _public(key: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in key.items() if name != "secret_hash"}
