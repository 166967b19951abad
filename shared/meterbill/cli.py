"""The `meterbill` command: serve, demo and keys."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import quote

from meterbill.errors import MeterbillError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.command(args)
    except (ValueError, FileNotFoundError, MeterbillError) as exc:
        print(f"meterbill: {exc}", file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterbill", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API locally on an embedded DynamoDB")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--api-key", help="accept this key for the tenant 'default'")
    serve.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="NAME=KEY",
        help="also accept KEY for tenant NAME (repeatable)",
    )
    serve.add_argument(
        "--ingest-rate-limit",
        type=int,
        default=0,
        metavar="N",
        help="ingest requests per second per tenant before 429 (default 0: no limit)",
    )
    serve.add_argument("--project", type=Path, help="checkout holding template.yaml")
    serve.set_defaults(command=_serve)

    demo = commands.add_parser("demo", help="run the OpenAI o1 walkthrough and print the invoice")
    demo.add_argument("--project", type=Path, help="checkout holding template.yaml")
    demo.set_defaults(command=_demo)

    close = commands.add_parser(
        "close-periods",
        help="invoice every period due, in a running `meterbill serve` or a deployed --table",
    )
    close.add_argument("--now", help="act as if it were this RFC 3339 instant (time travel)")
    close.add_argument("--table", help="a deployed table (the stack's TableName output)")
    close.add_argument("--event-bus", help="with --table: the EventBridge bus for invoice events")
    close.set_defaults(command=_close_periods)

    reconcile = commands.add_parser(
        "reconcile", help="recount a customer's usage from raw events and compare with counters"
    )
    reconcile.add_argument("--tenant", default="default")
    reconcile.add_argument("--customer", required=True, help="customer id (cus_...)")
    reconcile.add_argument("--period", help="an instant inside the period (default: now)")
    reconcile.add_argument("--repair", action="store_true", help="set counters to the recount")
    reconcile.add_argument("--table", help="a deployed table (the stack's TableName output)")
    reconcile.set_defaults(command=_reconcile)

    keys = commands.add_parser(
        "keys", help="manage API keys, in a running `meterbill serve` or a deployed --table"
    )
    key_commands = keys.add_subparsers(required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="default")
    listing = key_commands.add_parser("list", help="list a tenant's keys (never the secrets)")
    listing.add_argument("--tenant", required=True)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    for command, handler in ((create, _keys_create), (listing, _keys_list), (revoke, _keys_revoke)):
        command.add_argument("--table", help="a deployed table (the stack's TableName output)")
        command.set_defaults(command=handler)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from meterbill.keys import create_api_key
    from meterbill.local.admin import write_discovery
    from meterbill.local.server import LocalServer
    from meterbill.local.template import find_project_root
    from meterbill.runtime import store

    tenants = [_tenant_key(spec) for spec in args.tenant]
    os.environ["INGEST_RATE_LIMIT"] = str(max(0, args.ingest_rate_limit))
    server = LocalServer(find_project_root(args.project), args.host, args.port)
    server.start()
    discovery = None
    try:
        default = create_api_key(store(), "default", "serve", args.api_key)
        for tenant, key in tenants:
            create_api_key(store(), tenant, "serve", key)
        assert server.admin is not None
        discovery = write_discovery(server.url, server.admin.token)
        server.runtime.run_schedules_every(60)
        print(f"meterbill is serving {server.url}/v1 (OpenAPI: {server.url}/v1/openapi.json)")
        print(f"API key for tenant 'default': {default.secret}")
        for tenant, _ in tenants:
            print(f"API key for tenant {tenant!r}: as given")
        print("Periods due are invoiced every minute (meterbill close-periods runs it now).")
        print("Press Ctrl-C to stop.", flush=True)
        _wait_for_signal()
    finally:
        if discovery is not None:
            discovery.unlink(missing_ok=True)
        server.stop()
        print("meterbill stopped.", flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from meterbill.demo import format_invoice, run_walkthrough
    from meterbill.keys import create_api_key
    from meterbill.local.client import ApiClient
    from meterbill.local.server import LocalServer
    from meterbill.local.template import find_project_root
    from meterbill.runtime import store

    server = LocalServer(find_project_root(args.project), port=0)
    server.start()
    try:
        key = create_api_key(store(), "demo", "demo")
        invoice = run_walkthrough(ApiClient(server.url, key.secret))
    finally:
        server.stop()
    print(format_invoice(invoice))
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    issued = _key_admin(args).create(args.tenant, args.name)
    print(f"key id: {issued['key_id']}")
    print(f"tenant: {issued['tenant_id']}")
    print(f"secret: {issued['secret']}")
    print("The secret is shown once; only its hash is stored.", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    keys = _key_admin(args).list(args.tenant)
    print(f"{'KEY ID':<26}{'PREFIX':<18}{'NAME':<16}{'CREATED':<27}{'LAST USED':<12}STATUS")
    for key in keys:
        status = f"revoked {key['revoked_at']}" if key.get("revoked_at") else "active"
        print(
            f"{key['key_id']:<26}{key['prefix'] + '...':<18}{key['name']:<16}"
            f"{key['created_at']:<27}{key.get('last_used_day') or '-':<12}{status}"
        )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    key = _key_admin(args).revoke(args.key_id)
    print(f"revoked {key['key_id']} of tenant {key['tenant_id']}")
    print("API Gateway may keep accepting it until its authorizer cache (300 s) expires.")
    return 0


def _key_admin(args: argparse.Namespace) -> KeyAdmin:
    from meterbill.local.admin import read_discovery

    if args.table:
        return TableKeyAdmin(args.table)
    discovered = read_discovery()
    return LocalKeyAdmin(discovered["url"], discovered["admin_token"])


class KeyAdmin(Protocol):
    def create(self, tenant: str, name: str) -> dict[str, Any]: ...
    def list(self, tenant: str) -> list[dict[str, Any]]: ...
    def revoke(self, key_id: str) -> dict[str, Any]: ...


class TableKeyAdmin:
    """Keys in a deployed table, with the caller's AWS credentials."""

    def __init__(self, table: str) -> None:
        from meterbill.storage import Store

        self._store = Store(table)

    def create(self, tenant: str, name: str) -> dict[str, Any]:
        from meterbill.keys import create_api_key

        return asdict(create_api_key(self._store, tenant, name))

    def list(self, tenant: str) -> list[dict[str, Any]]:
        from meterbill.keys import list_api_keys

        return [asdict(key) for key in list_api_keys(self._store, tenant)]

    def revoke(self, key_id: str) -> dict[str, Any]:
        from meterbill.keys import revoke_api_key

        return asdict(revoke_api_key(self._store, key_id))


class LocalKeyAdmin:
    """Keys in a running `meterbill serve`, through its local admin routes."""

    def __init__(self, url: str, token: str) -> None:
        from meterbill.local.admin import ADMIN_HEADER
        from meterbill.local.client import ApiClient

        self._client = ApiClient(url, api_key=None, extra_headers={ADMIN_HEADER: token})

    def create(self, tenant: str, name: str) -> dict[str, Any]:
        return self._expect(self._client.post("/_local/keys", {"tenant": tenant, "name": name}))

    def list(self, tenant: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._expect(
            self._client.get(f"/_local/keys?tenant={quote(tenant)}")
        )["items"]
        return items

    def revoke(self, key_id: str) -> dict[str, Any]:
        return self._expect(self._client.post(f"/_local/keys/{quote(key_id)}/revoke", {}))

    def _expect(self, response: Any) -> dict[str, Any]:
        if response.status >= 400:
            raise ValueError(response.body.get("message", str(response.body)))
        body: dict[str, Any] = response.body
        return body


def _close_periods(args: argparse.Namespace) -> int:
    from meterbill.periods import parse_instant

    now = parse_instant(args.now) if args.now else None
    if args.table:
        result = _close_in_table(args.table, args.event_bus, now)
    else:
        from meterbill.local.admin import ADMIN_HEADER, read_discovery
        from meterbill.local.client import ApiClient

        discovered = read_discovery()
        client = ApiClient(
            discovered["url"],
            None,
            timeout=600,
            extra_headers={ADMIN_HEADER: discovered["admin_token"]},
        )
        response = client.post("/_local/close-periods", {"now": args.now} if args.now else {})
        if response.status >= 400:
            raise ValueError(response.body.get("message", str(response.body)))
        result = response.body
    print(f"subscriptions due: {result['queued']}, failed (will be retried): {result['failed']}")
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    request = {"tenant_id": args.tenant, "customer_id": args.customer, "repair": args.repair}
    if args.period:
        request["at"] = args.period
    if args.table:
        from datetime import UTC, datetime

        from meterbill.periods import parse_instant
        from meterbill.recount import describe, reconcile_customer
        from meterbill.storage import Store

        at = parse_instant(args.period) if args.period else datetime.now(UTC)
        found = reconcile_customer(Store(args.table), args.tenant, args.customer, at, args.repair)
        lines = [describe(d) for d in found]
    else:
        response = _local_admin().post("/_local/reconcile", request)
        if response.status >= 400:
            raise ValueError(response.body.get("message", str(response.body)))
        lines = response.body["differences"]
    for line in lines:
        print(line)
    print(f"{len(lines)} difference(s)" + (" repaired" if args.repair and lines else ""))
    return 1 if lines and not args.repair else 0


def _local_admin() -> Any:
    from meterbill.local.admin import ADMIN_HEADER, read_discovery
    from meterbill.local.client import ApiClient

    discovered = read_discovery()
    return ApiClient(
        discovered["url"],
        None,
        timeout=600,
        extra_headers={ADMIN_HEADER: discovered["admin_token"]},
    )


def _close_in_table(table: str, bus: str | None, now: Any) -> dict[str, int]:
    """The scheduled close, in this process, against a deployed table (no queue needed)."""
    from datetime import UTC, datetime

    from meterbill.errors import MeterbillError
    from meterbill.invoicing import close_due_periods
    from meterbill.notifications import EventPublisher
    from meterbill.storage import DUE_SHARDS, Store

    store, publisher = Store(table), EventPublisher(bus)
    instant = now or datetime.now(UTC)
    due = [s for shard in range(DUE_SHARDS) for s in store.due_subscriptions(shard, instant)]
    failed = 0
    for tenant_id, subscription_id in due:
        try:
            close_due_periods(store, publisher, tenant_id, subscription_id, instant)
        except MeterbillError as exc:
            failed += 1
            print(f"{tenant_id}/{subscription_id}: {exc.message}", file=sys.stderr)
    return {"queued": len(due), "failed": failed}


def _tenant_key(spec: str) -> tuple[str, str]:
    tenant, separator, key = spec.partition("=")
    if not separator or not tenant or not key:
        raise ValueError(f"--tenant expects NAME=KEY, got {spec!r}")
    return tenant, key


def _wait_for_signal() -> None:
    stop = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    while not stop.wait(0.5):
        pass


if __name__ == "__main__":
    sys.exit(main())
