"""API keys: random secrets shown once, stored only as a hash, each mapped to one tenant.

A secret looks like `mb_live_<43 url-safe characters>` (256 random bits). The fixed prefix lets
secret scanners recognise a leaked key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from meterbill.ids import random_id
from meterbill.storage import ApiKeyRecord, Store

__all__ = ["SECRET_PREFIX", "IssuedKey", "create_api_key", "hash_secret", "tenant_for_secret"]

SECRET_PREFIX = "mb_live_"
_TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_SECRET_MAX_LENGTH = 256


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    tenant_id: str
    secret: str


def hash_secret(secret: str) -> str:
    # The secret has 256 random bits, so a fast unsalted hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    store: Store, tenant_id: str, name: str = "default", secret: str | None = None
) -> IssuedKey:
    """Store a new key for a tenant. `secret` lets the local runtime accept a key it was given."""
    if not _TENANT_PATTERN.match(tenant_id):
        raise ValueError("tenant must be 1-64 letters, digits, '.', '_' or '-'")
    secret = secret or SECRET_PREFIX + secrets.token_urlsafe(32)
    if not 16 <= len(secret) <= _SECRET_MAX_LENGTH:
        raise ValueError("an API key must be 16 to 256 characters long")
    record = ApiKeyRecord(
        key_id=random_id("key"),
        tenant_id=tenant_id,
        name=name,
        prefix=secret[: len(SECRET_PREFIX) + 4],
        created_at=datetime.now(UTC).isoformat(),
    )
    store.put_api_key(hash_secret(secret), record)
    return IssuedKey(record.key_id, tenant_id, secret)


def tenant_for_secret(store: Store, secret: str | None) -> str | None:
    """The tenant a presented key belongs to, or None when it is missing or unknown."""
    if not secret or len(secret) > _SECRET_MAX_LENGTH:
        return None
    record = store.get_api_key(hash_secret(secret))
    return None if record is None else record.tenant_id
