"""A child the API server refuses (here: a ResourceQuota forbidding Secrets) is a Stalled condition.

Not a crash loop: the status names the object, the quota and the fix; the operator logs one
warning line per attempt, no traceback, and retries after a growing delay. Once the quota is
gone, the backend becomes Ready.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from tests.e2e.conftest import basic_backend, condition, get_backend, solo_operator, stalled, wait_ready

pytestmark = pytest.mark.e2e

NO_SECRETS_QUOTA = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "no-secrets"},
    "spec": {"hard": {"secrets": "0"}},
}


@pytest.fixture
def quiet_operator(cluster: LocalCluster, crd: None, tmp_path: Path) -> Iterator[tuple[str, OperatorProcess]]:
    """A restricted namespace with an operator of its own whose periodic resync never fires here.

    So every reconcile it makes is one it asked for (an event, or its own retry after a delay).
    """
    with solo_operator(cluster, tmp_path, SBO_RESYNC_SECONDS="3600") as namespace_and_operator:
        yield namespace_and_operator


def secret_creates(operator: OperatorProcess) -> float:
    return operator.metric_samples("sbo_api_writes_total").get('{kind="Secret",verb="create"}', 0)


def test_a_quota_forbidding_secrets_stalls_with_the_reason_then_recovers(
    cluster: LocalCluster, quiet_operator: tuple[str, OperatorProcess]
) -> None:
    namespace, operator = quiet_operator
    cluster.apply(NO_SECRETS_QUOTA, namespace=namespace)
    quota_status = ("get", "resourcequota/no-secrets", "-n", namespace, "-o", "jsonpath={.status.hard}")
    eventually(
        lambda: cluster.kubectl(*quota_status).stdout.strip(),
        what="the quota controller to publish the quota's status",
    )
    cluster.apply(basic_backend(namespace))

    stall = eventually(lambda: stalled(cluster, namespace), timeout=60, what="Stalled=True")
    assert stall["reason"] == "QuotaExceeded"
    assert "Secret shop-" in stall["message"]
    assert f"ResourceQuota {namespace}/no-secrets" in stall["message"]
    backend = get_backend(cluster, namespace)
    assert condition(backend, "Ready")["status"] == "False"
    # The rest converged as far as it could: what needs no generated Secret exists.
    assert cluster.kubectl("get", "configmap/shop-redis-config", "-n", namespace, check=False).returncode == 0

    # Backoff: a handful of attempts in 30 s, not a crash loop.
    before = secret_creates(operator)
    time.sleep(30)
    attempts = secret_creates(operator) - before
    assert attempts <= 4 * 6, f"{attempts} Secret creates in 30 s (4 Secrets per attempt)"
    log = operator.log_path.read_text()
    assert "Traceback" not in log
    assert "QuotaExceeded" in log, "one warning line says why"

    cluster.kubectl("delete", "resourcequota/no-secrets", "-n", namespace)
    backend = wait_ready(cluster, namespace, timeout=180)
    assert condition(backend, "Stalled")["status"] == "False"
