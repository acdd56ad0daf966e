"""Deleting a namespace under its backends is quiet: one info line each, no tracebacks, no retries.

Issue 15, item 5: while a namespace was being deleted, the API answered the
operator's creates with 403 "... because it is being terminated"; the operator
logged a traceback per attempt and, events bypassing the backoff, eight attempts
came within 0.4 s while the log said "retrying in 1s ... 64s".
"""

from __future__ import annotations

import re
import time

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import create_ready_backends

pytestmark = pytest.mark.e2e

BACKENDS = ("shop", "cart")


def test_deleting_the_namespace_logs_one_line_per_backend_and_no_traceback(
    cluster: LocalCluster, solo: tuple[str, OperatorProcess], core: client.CoreV1Api
) -> None:
    namespace, operator = solo
    create_ready_backends(cluster, namespace, BACKENDS)
    start = operator.log_path.stat().st_size
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")

    def namespace_gone() -> bool:
        return namespace not in {n.metadata.name for n in core.list_namespace().items}

    eventually(namespace_gone, timeout=120, what=f"namespace {namespace} to be deleted")
    time.sleep(5)  # anything the operator still does about it
    with operator.log_path.open("rb") as log:
        log.seek(start)
        window = log.read().decode(errors="replace")

    assert window.count("Traceback") == 0, window[-4000:]
    assert re.findall(r"retrying in", window) == [], window[-4000:]
    # Nor does it post Events there, which Kopf would retry, logging an ERROR per attempt.
    assert re.findall(r"\bERROR\b", window) == [], window[-4000:]
    gone = re.findall(r"(\S+) is gone \(its namespace was deleted\)", window)
    assert len(gone) == len(set(gone)), f"at most one line per backend: {gone}"
    assert set(gone) <= {f"{namespace}/{name}" for name in BACKENDS}
