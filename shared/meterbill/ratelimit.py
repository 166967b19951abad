"""Per-tenant request rate limiting on ingest: fixed one-second windows counted in the table.

Each window is its own item (`T#<tenant>#RATE#<epoch second>`), so windows never contend with
each other, and expire through the table's TTL. The count is approximate by design: a retried
update may count one request twice, which can only make the limit slightly stricter, never
let usage through uncounted or change what is billed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from meterbill.errors import MeterbillError
from meterbill.storage import Store

__all__ = ["RateLimited", "enforce_rate_limit"]

_WINDOW_SECONDS = 1
_KEEP_WINDOWS_SECONDS = 120


class RateLimited(MeterbillError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def enforce_rate_limit(
    store: Store, tenant_id: str, requests_per_second: int, now: datetime | None = None
) -> None:
    """Count this request; raise RateLimited when the tenant is over its limit. 0 disables."""
    if requests_per_second <= 0:
        return
    second = int((now or datetime.now(UTC)).timestamp())
    count = store.count_request(tenant_id, second, expires_at=second + _KEEP_WINDOWS_SECONDS)
    if count > requests_per_second:
        raise RateLimited(
            f"tenant is over its ingest limit of {requests_per_second} requests per second",
            retry_after=_WINDOW_SECONDS,
        )
