"""Objects a function keeps for its lifetime, created on first use rather than at import."""

from __future__ import annotations

import os
from functools import lru_cache

from meterbill.notifications import EventPublisher
from meterbill.settings import settings
from meterbill.storage import Store

__all__ = ["publisher", "store"]


@lru_cache(maxsize=1)
def store() -> Store:
    return Store(settings().table_name)


@lru_cache(maxsize=1)
def publisher() -> EventPublisher:
    # Without a bus (the local runtime) invoice events go to the log.
    return EventPublisher(os.environ.get("EVENT_BUS_NAME") or None)
