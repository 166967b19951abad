"""Identifiers made by the server.

Catalog objects with a natural key (a feature's or plan's lookup key, a customer's external id)
get an id derived from the tenant and that key. A create is then one conditional write on one
item: a retried create can never leave a second object or a half-written uniqueness claim behind.
Objects without a natural key (subscriptions, generated event ids) get random ids.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

__all__ = ["derived_id", "random_id"]

_ID_CHARS = 24


def derived_id(prefix: str, tenant_id: str, *natural_key: str) -> str:
    material = "\x00".join((prefix, tenant_id, *natural_key)).encode()
    digest = hashlib.sha256(material).digest()
    return f"{prefix}_{_encode(digest)}"


def random_id(prefix: str) -> str:
    return f"{prefix}_{_encode(secrets.token_bytes(16))}"


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=").lower()[:_ID_CHARS]
