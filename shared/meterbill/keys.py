"""API keys: random secrets shown once, stored only as a hash, each mapped to one tenant.

A secret looks like `mb_live_<43 url-safe characters>` (256 random bits); the fixed prefix lets
secret scanners recognise a leaked key. The key id is derived from the secret's hash, so the
authorizer finds a key with one read and the id can be shown, listed and revoked without ever
revealing the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from meterbill.errors import NotFound
from meterbill.storage import ApiKeyRecord, Store

__all__ = [
    "SECRET_PREFIX",
    "IssuedKey",
    "create_api_key",
    "hash_secret",
    "key_id_for",
    "list_api_keys",
    "revoke_api_key",
    "tenant_for_secret",
]

SECRET_PREFIX = "mb_live_"
_TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_SECRET_MIN_LENGTH = 16
_SECRET_MAX_LENGTH = 256


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    tenant_id: str
    secret: str


def hash_secret(secret: str) -> str:
    # Generated secrets carry 256 random bits, so a fast unsalted hash leaves nothing to guess.
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_for(secret: str) -> str:
    digest = hashlib.sha256(b"meterbill-key-id\x00" + secret.encode()).digest()
    return "key_" + base64.b32encode(digest).decode().rstrip("=").lower()[:20]


def create_api_key(
    store: Store, tenant_id: str, name: str = "default", secret: str | None = None
) -> IssuedKey:
    """Store a new key for a tenant. `secret` lets the local runtime accept a key it was given."""
    if not _TENANT_PATTERN.match(tenant_id):
        raise ValueError("tenant must be 1-64 letters, digits, '.', '_' or '-'")
    secret = secret or SECRET_PREFIX + secrets.token_urlsafe(32)
    if not _SECRET_MIN_LENGTH <= len(secret) <= _SECRET_MAX_LENGTH:
        raise ValueError("an API key must be 16 to 256 characters long")
    record = ApiKeyRecord(
        key_id=key_id_for(secret),
        tenant_id=tenant_id,
        name=name,
        prefix=secret[: len(SECRET_PREFIX) + 4],
        secret_hash=hash_secret(secret),
        created_at=_now().isoformat(timespec="seconds"),
    )
    store.put_api_key(record)
    return IssuedKey(record.key_id, tenant_id, secret)


def list_api_keys(store: Store, tenant_id: str) -> list[ApiKeyRecord]:
    return sorted(store.list_api_keys(tenant_id), key=lambda key: (key.created_at, key.key_id))


def revoke_api_key(store: Store, key_id: str) -> ApiKeyRecord:
    record = store.get_api_key(key_id)
    if record is None:
        raise NotFound(f"API key {key_id!r} was not found")
    if record.revoked_at is None:
        store.mark_api_key(record, "revoked_at", _now().isoformat(timespec="seconds"))
    return record


def tenant_for_secret(store: Store, secret: str | None) -> str | None:
    """The tenant a presented key belongs to, or None when it is missing, unknown or revoked."""
    if not secret or len(secret) > _SECRET_MAX_LENGTH:
        return None
    record = store.get_api_key(key_id_for(secret))
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
        return None
    today = _now().date().isoformat()
    if record.last_used_day != today:
        # At most one write a day per key, and only when the authorizer cache misses.
        store.mark_api_key(record, "last_used_day", today)
    return record.tenant_id


def _now() -> datetime:
    return datetime.now(UTC)
