"""`meterbill keys` against a running `meterbill serve`, found through its discovery file."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import PROJECT_ROOT, LocalServer


def _keys(server: LocalServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meterbill.cli", "keys", *args],
        cwd=PROJECT_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_key_created_listed_and_revoked_from_the_cli(server: LocalServer) -> None:
    created = _keys(server, "create", "--tenant", "cli-tenant", "--name", "laptop")
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(": ", 1) for line in created.stdout.splitlines())
    secret, key_id = fields["secret"], fields["key id"]

    assert server.client(secret).get("/v1/features").status == 200
    listing = _keys(server, "list", "--tenant", "cli-tenant")
    assert key_id in listing.stdout and "laptop" in listing.stdout
    assert secret not in listing.stdout
    assert "active" in listing.stdout

    revoked = _keys(server, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert server.client(secret).get("/v1/features").status == 401
    assert "revoked" in _keys(server, "list", "--tenant", "cli-tenant").stdout


def test_revoking_an_unknown_key_fails_with_a_message(server: LocalServer) -> None:
    result = _keys(server, "revoke", "key_does_not_exist")

    assert result.returncode == 2
    assert "key_does_not_exist" in result.stderr
