"""An operator restarted over existing backends reads its children in pages and writes nothing.

What a restart at scale depends on (make bench-reconcile measures the memory): the new
process lists every child kind page by page into projections, reconciles no backend before
its children are all known (a reconcile that ran earlier would create them again), and,
nothing having changed, sends no write.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from sbo_operator.builders.labels import MANAGED_BY, MANAGED_BY_LABEL
from tests.e2e.conftest import create_ready_backends, quiet_writes, solo_operator, wait_ready

pytestmark = pytest.mark.e2e

BACKENDS = ("shop", "cart")
PAGE_SIZE = 2
MANAGED_BY_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"


def reconciles(operator: OperatorProcess) -> float:
    return sum(operator.metric_samples("sbo_reconciles_total").values())


def test_a_restart_over_existing_backends_lists_children_in_pages_and_writes_nothing(
    cluster: LocalCluster, crd: None, tmp_path: Path, core: client.CoreV1Api
) -> None:
    with solo_operator(cluster, tmp_path, SBO_LIST_PAGE_SIZE=str(PAGE_SIZE)) as (namespace, operator):
        create_ready_backends(cluster, namespace, BACKENDS)
        services = len(core.list_namespaced_service(namespace, label_selector=MANAGED_BY_SELECTOR).items)

        operator.kill()
        operator.start()
        eventually(
            lambda: reconciles(operator) >= len(BACKENDS),
            timeout=60,
            what="the restarted operator to reconcile every backend",
        )

        assert operator.writes() == 0, "the restart re-created or re-applied nothing"
        pages = operator.metric_samples("sbo_list_pages_total").get('{kind="Service"}', 0)
        assert pages >= services / PAGE_SIZE, (
            f"{services} Services listed in {pages} pages: one page of whole objects at a time"
        )
        assert quiet_writes(operator, 5) == 0
        for name in BACKENDS:
            wait_ready(cluster, namespace, name, timeout=5)
