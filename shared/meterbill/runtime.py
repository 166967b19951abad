"""Objects a function keeps for its lifetime, created on first use rather than at import."""

from __future__ import annotations

from functools import lru_cache

from meterbill.settings import settings
from meterbill.storage import Store

__all__ = ["store"]


@lru_cache(maxsize=1)
def store() -> Store:
    return Store(settings().table_name)
