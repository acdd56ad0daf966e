"""JSON logs: one object per line, with Kopf's object reference and exceptions."""

from __future__ import annotations

import json
import logging

import pytest

from sbo_operator.logs import JsonFormatter, configure_logging
from sbo_operator.settings import LogFormat, OperatorSettings

pytestmark = pytest.mark.unit


def record(message: str, **extra: object) -> logging.LogRecord:
    log_record = logging.LogRecord("sbo_operator.reconcile", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(log_record, key, value)
    return log_record


def test_json_lines_carry_level_logger_message_and_object() -> None:
    ref = {"namespace": "demo", "name": "shop", "kind": "ScalableBackend"}
    line = JsonFormatter().format(record("demo/shop: status changed", k8s_ref=ref))
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "sbo_operator.reconcile"
    assert entry["message"] == "demo/shop: status changed"
    assert entry["object"] == ref
    assert entry["time"].endswith("+00:00")
    assert "\n" not in line


def test_exceptions_stay_inside_the_json_object() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        failing = record("reconcile failed")
        failing.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(failing))
    assert "RuntimeError: boom" in entry["exception"]


def test_configure_logging_installs_the_chosen_format() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(OperatorSettings(log_format=LogFormat.JSON, log_level="debug"))
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
        assert logging.getLogger("kopf.objects").level == logging.WARNING, "Kopf's per-handler lines stay out"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
