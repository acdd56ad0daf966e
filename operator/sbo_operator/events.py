"""Kubernetes Events on a ScalableBackend (`kubectl describe sb` shows them).

Posted through Kopf's event poster, which batches and retries. Messages
never carry secret values; they are cut to the API's limit.
"""

from __future__ import annotations

from typing import Any, cast

import kopf

MESSAGE_LIMIT = 1024


def post_event(body: dict[str, Any], type: str, reason: str, message: str) -> None:
    kopf.event(kopf.Body(cast(kopf.RawBody, body)), type=type, reason=reason, message=message[:MESSAGE_LIMIT])
