"""Configuration, read once from the environment and checked loudly."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, Field, ValidationError

__all__ = ["Settings", "settings"]


class Settings(BaseModel):
    table_name: str = Field(min_length=3)
    # Parallel conditional puts per bulk request. The local runtime sets 1: moto is not safe
    # for concurrent writers and gains nothing from threads.
    ingest_write_concurrency: int = Field(default=16, ge=1, le=64)
    # Ingest requests per second per tenant; 0 turns the limit off (the local default).
    ingest_rate_limit: int = Field(default=0, ge=0)


@lru_cache(maxsize=1)
def settings() -> Settings:
    try:
        return Settings(
            table_name=os.environ.get("TABLE_NAME", ""),
            ingest_write_concurrency=int(os.environ.get("INGEST_WRITE_CONCURRENCY", "16")),
            ingest_rate_limit=int(os.environ.get("INGEST_RATE_LIMIT", "0")),
        )
    except (ValidationError, ValueError) as exc:
        raise RuntimeError(f"meterbill is misconfigured: {exc}") from exc
