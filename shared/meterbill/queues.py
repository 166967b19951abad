"""The close queue: the only module besides `storage` and `notifications` that calls AWS."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from meterbill.errors import StorageUnavailable

__all__ = ["CloseQueue"]


class CloseQueue:
    BATCH = 10  # SQS SendMessageBatch takes at most ten messages

    def __init__(self, url: str, client: Any | None = None) -> None:
        self.url = url
        self._client = client

    @classmethod
    def from_environment(cls) -> CloseQueue:
        url = os.environ.get("CLOSE_QUEUE_URL")
        if not url:
            raise RuntimeError("CLOSE_QUEUE_URL is not set")
        return cls(url)

    def send(self, messages: list[dict[str, str]], delay_seconds: int = 0) -> int:
        entries = [
            {"Id": uuid.uuid4().hex, "MessageBody": json.dumps(m), "DelaySeconds": delay_seconds}
            for m in messages
        ]
        try:
            response = self._sqs().send_message_batch(QueueUrl=self.url, Entries=entries)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"could not queue due subscriptions: {exc}") from exc
        if response.get("Failed"):
            raise StorageUnavailable(f"{len(response['Failed'])} due subscriptions were not queued")
        return len(entries)

    def _sqs(self) -> Any:
        if self._client is None:
            self._client = boto3.client("sqs")
        return self._client
