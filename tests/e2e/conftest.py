"""A real `meterbill serve` process on a free loopback port, shared by the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterbill.local.client import ApiClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY_A = "mb_test_tenant_a_0123456789abcdef"
KEY_B = "mb_test_tenant_b_0123456789abcdef"


@dataclass(frozen=True)
class LocalServer:
    url: str
    process: subprocess.Popen[str]
    env: dict[str, str]

    def client(self, api_key: str | None = KEY_A) -> ApiClient:
        return ApiClient(self.url, api_key)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    port = _free_port()
    state = tmp_path_factory.mktemp("meterbill-state")
    env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", "METERBILL_STATE_DIR": str(state)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meterbill.cli",
            "serve",
            "--port",
            str(port),
            "--api-key",
            KEY_A,
            "--tenant",
            f"tenant-b={KEY_B}",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner = _read_until(process, "Press Ctrl-C to stop.")
    assert f"http://127.0.0.1:{port}/v1" in banner
    # Keep reading, so that the server never blocks on a full pipe.
    rest: list[str] = []
    reader = threading.Thread(target=lambda: rest.extend(process.stdout or []), daemon=True)
    reader.start()

    yield LocalServer(f"http://127.0.0.1:{port}", process, env)

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    reader.join(timeout=5)
    output = "".join(rest)
    assert process.returncode == 0, output
    assert "meterbill stopped." in output
    assert not (state / "serve.json").exists(), "serve left its discovery file behind"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _read_until(process: subprocess.Popen[str], marker: str) -> str:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    process.wait(timeout=5)
    raise AssertionError("meterbill serve exited early:\n" + "".join(lines))
