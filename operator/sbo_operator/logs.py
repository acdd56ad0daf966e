"""Logging for the operator process: text for people, JSON for log pipelines."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from sbo_operator.settings import LogFormat, OperatorSettings


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with Kopf's object reference when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        k8s_ref = getattr(record, "k8s_ref", None)
        if k8s_ref:
            entry["object"] = k8s_ref
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(settings: OperatorSettings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # The API client logs every request at DEBUG, and Kopf every handler call
    # at INFO; the operator's own lines say what changed.
    logging.getLogger("kubernetes").setLevel(max(root.level, logging.INFO))
    logging.getLogger("kopf.objects").setLevel(max(root.level, logging.WARNING))
