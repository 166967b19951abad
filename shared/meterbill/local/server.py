"""`meterbill serve`: the local runtime behind a plain HTTP server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meterbill.http import MAX_BODY_BYTES, dumps
from meterbill.local.admin import AdminApi
from meterbill.local.runtime import HttpResponse, LocalRuntime, json_error

__all__ = ["LocalServer"]


class LocalServer:
    def __init__(self, project_root: Path, host: str = "127.0.0.1", port: int = 3000) -> None:
        self.runtime = LocalRuntime(project_root)
        self._host = host
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.admin: AdminApi | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://{self._host}:{self._httpd.server_port}"

    def start(self) -> None:
        from meterbill.runtime import store

        self.runtime.start()
        self.admin = AdminApi(store(), close_periods=self._close_periods_unlocked)
        handler = _handler_for(self.runtime, self.admin)
        self._httpd = ThreadingHTTPServer((self._host, self._port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)
        self._thread.start()

    def _close_periods_unlocked(self, now: Any) -> dict[str, int]:
        return self.runtime.close_periods(now)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        self.runtime.stop()


def _handler_for(runtime: LocalRuntime, admin: AdminApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "meterbill-local"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._send(json_error(413, "payload_too_large", "body is larger than 1 MiB"))
                self.close_connection = True
                return
            body = self.rfile.read(length).decode("utf-8", errors="replace") if length else None
            parts = urlsplit(self.path)
            headers = {name: value for name, value in self.headers.items()}
            if admin.handles(parts.path):
                # The runtime's lock is reentrant: the close invokes handlers under it too.
                with runtime.lock:
                    status, answer = admin.handle(
                        self.command, parts.path, parts.query, headers, body
                    )
                self._send(HttpResponse(status, {}, dumps(answer)))
                return
            response = runtime.handle_http(self.command, parts.path, parts.query, headers, body)
            self._send(response)

        def _send(self, response: HttpResponse) -> None:
            payload = response.body.encode()
            self.send_response(response.status)
            headers = dict(response.headers)
            headers.setdefault("Content-Type", "application/json")
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            # Requests are logged by the handlers, with tenant and request ids.
            return

    return Handler
