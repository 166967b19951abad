"""The `meterbill` command: serve, demo and keys."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.command(args)
    except (ValueError, FileNotFoundError) as exc:
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
    serve.add_argument("--project", type=Path, help="checkout holding template.yaml")
    serve.set_defaults(command=_serve)

    demo = commands.add_parser("demo", help="run the OpenAI o1 walkthrough and print the invoice")
    demo.add_argument("--project", type=Path, help="checkout holding template.yaml")
    demo.set_defaults(command=_demo)

    keys = commands.add_parser("keys", help="manage API keys in a deployed table")
    key_commands = keys.add_subparsers(required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="default")
    create.add_argument("--table", required=True, help="the stack's TableName output")
    create.set_defaults(command=_keys_create)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from meterbill.keys import create_api_key
    from meterbill.local.server import LocalServer
    from meterbill.local.template import find_project_root
    from meterbill.runtime import store

    tenants = [_tenant_key(spec) for spec in args.tenant]
    server = LocalServer(find_project_root(args.project), args.host, args.port)
    server.start()
    try:
        default = create_api_key(store(), "default", "serve", args.api_key)
        for tenant, key in tenants:
            create_api_key(store(), tenant, "serve", key)
        print(f"meterbill is serving {server.url}/v1 (OpenAPI: {server.url}/v1/openapi.json)")
        print(f"API key for tenant 'default': {default.secret}")
        for tenant, _ in tenants:
            print(f"API key for tenant {tenant!r}: as given")
        print("Press Ctrl-C to stop.", flush=True)
        _wait_for_signal()
    finally:
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
    from meterbill.keys import create_api_key
    from meterbill.storage import Store

    issued = create_api_key(Store(args.table), args.tenant, args.name)
    print(f"key id: {issued.key_id}")
    print(f"tenant: {issued.tenant_id}")
    print(f"secret: {issued.secret}")
    print("The secret is shown once; only its hash is stored.", file=sys.stderr)
    return 0


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
