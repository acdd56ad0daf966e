"""The chart's RBAC is sufficient: the operator runs outside the cluster with a token of the
chart's ServiceAccount and reconciles examples/basic.yaml to Ready. Along the way the status it
writes is checked against kstatus (`kubectl wait`, observedGeneration) and the Argo CD health check.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.operator_process import OperatorProcess
from devkit.paths import REPO
from tests.integration.shipping.conftest import (
    RESTRICTED,
    Helm,
    fullname,
    release_name,
    service_account_kubeconfig,
)
from tests.unit.shipping.argocd_health import health

pytestmark = pytest.mark.e2e

# The RBAC authorizer's refusal (other 403s, e.g. a namespace being terminated, are not RBAC's).
FORBIDDEN = re.compile(r'forbidden: User "[^"]+" cannot [\w-]+ resource')
# Kopf's optional scanning (namespaces and CRDs) retries a 403 a few times, then falls back to
# the namespaces it was given; the chart grants it only for glob patterns (operator/sbo_operator/rbac.py).
KOPF_SCANNING = re.compile(
    r"GET \S+/(api/v1/namespaces|apis/apiextensions\.k8s\.io/v1/customresourcedefinitions)\S* -> "
)


def refusals(text: str) -> list[str]:
    """Log lines where the API refused the operator, other than Kopf's optional scanning."""
    return [line for line in text.splitlines() if FORBIDDEN.search(line) and not KOPF_SCANNING.search(line)]


def basic_backend(namespace: str, name: str = "shop") -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((REPO / "examples" / "basic.yaml").read_text())
    manifest["metadata"].update(namespace=namespace, name=name)
    return manifest


def get_backend(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        cluster.kubectl("get", f"scalablebackend/{name}", "-n", namespace, "-o", "yaml").stdout
    )
    return loaded


def capture(name: str, backend: dict[str, Any]) -> None:
    """SBO_CAPTURE_DIR=deploy/argocd/sbo.dev/ScalableBackend/testdata refreshes the health fixtures."""
    directory = os.environ.get("SBO_CAPTURE_DIR")
    if directory:
        kept = {k: backend[k] for k in ("apiVersion", "kind", "metadata", "spec", "status") if k in backend}
        meta = kept["metadata"]
        kept["metadata"] = {k: meta[k] for k in ("name", "namespace", "generation") if k in meta}
        Path(directory, f"{name}.yaml").write_text(yaml.safe_dump(kept, sort_keys=False))


def conditions(backend: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (backend.get("status") or {}).get("conditions", [])}


@pytest.fixture(scope="module")
def chart_install(cluster: LocalCluster, helm: Helm) -> Iterator[tuple[str, str, str]]:
    """The chart installed with Roles only, watching one namespace that no other operator watches.

    Yields (release namespace, ServiceAccount, watched namespace).
    """
    core = client.CoreV1Api(cluster.api)
    release_namespace = f"sbo-system-{secrets.token_hex(3)}"
    # Served by no other operator: outside the e2e operator's t-* and the nested run's rbac-*.
    watched = f"sa-proof-{secrets.token_hex(3)}"
    for name in (release_namespace, watched):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED)))
    release = release_name()
    helm.install(release, release_namespace, f"watchNamespaces={{{watched}}}")
    yield release_namespace, fullname(release), watched
    helm.uninstall(release, release_namespace)
    for name in (release_namespace, watched):
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def sa_operator(
    cluster: LocalCluster, chart_install: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    release_namespace, account, watched = chart_install
    directory = tmp_path_factory.mktemp("sa-operator")
    kubeconfig = service_account_kubeconfig(cluster, release_namespace, account, directory / "kubeconfig")
    process = OperatorProcess(
        kubeconfig=kubeconfig,
        log_path=directory / "operator.log",
        env={"SBO_NAMESPACES": watched, "SBO_RESYNC_SECONDS": "5", "SBO_LOG_LEVEL": "INFO"},
    )
    process.start()
    yield process
    process.stop()


def test_with_the_service_accounts_token_the_operator_makes_the_example_ready(
    cluster: LocalCluster, chart_install: tuple[str, str, str], sa_operator: OperatorProcess
) -> None:
    _, account, watched = chart_install
    whoami = cluster.kubectl("auth", "whoami", "--kubeconfig", str(sa_operator.kubeconfig), "-o", "yaml")
    assert "system:serviceaccount:" in whoami.stdout
    assert account in whoami.stdout

    cluster.apply(basic_backend(watched))
    # Argo CD and kstatus see a backend the operator is still working on as Progressing.
    first = eventually(
        lambda: (b := get_backend(cluster, watched, "shop")).get("status") and b,
        timeout=60,
        what="a first status",
    )
    capture("first-status", first)
    assert health(first)["status"] in ("Progressing", "Healthy")

    # kstatus: `kubectl wait --for=condition=Ready`, exactly as users and Flux do.
    wait = cluster.kubectl(
        "wait", "--for=condition=Ready", "scalablebackend/shop", "-n", watched, "--timeout=180s", check=False
    )
    ready = get_backend(cluster, watched, "shop")
    assert wait.returncode == 0, f"{wait.stderr}\n{yaml.safe_dump(ready.get('status'))}\n{log(sa_operator)}"
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    for condition in conditions(ready).values():
        assert condition["observedGeneration"] == ready["metadata"]["generation"], condition
    assert conditions(ready)["Reconciling"]["status"] == "False"
    assert conditions(ready)["Stalled"]["status"] == "False"
    capture("ready", ready)
    assert health(ready) == {"status": "Healthy", "message": conditions(ready)["Ready"]["message"]}

    # Every child kind, the generated Secrets included, was written with these credentials.
    for kind in ("deployment", "statefulset", "service", "configmap", "secret", "poddisruptionbudget",
                 "networkpolicy", "serviceaccount", "job"):  # fmt: skip
        listed = cluster.kubectl(
            "get", kind, "-n", watched, "-l", "app.kubernetes.io/managed-by=scalable-backend-operator",
            "-o", "name",
        ).stdout  # fmt: skip
        assert listed.strip(), f"no {kind} was created"
    assert_no_forbidden(sa_operator)


def test_a_spec_change_is_progressing_until_observed_then_healthy(
    cluster: LocalCluster, chart_install: tuple[str, str, str], sa_operator: OperatorProcess
) -> None:
    _, _, watched = chart_install
    cluster.apply(basic_backend(watched))
    cluster.kubectl("wait", "--for=condition=Ready", "scalablebackend/shop", "-n", watched, "--timeout=180s")
    before = get_backend(cluster, watched, "shop")
    cluster.kubectl(
        "patch",
        "scalablebackend/shop",
        "-n",
        watched,
        "--type=merge",
        "-p",
        '{"spec":{"api":{"replicas":3}}}',
    )
    after = get_backend(cluster, watched, "shop")
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    capture("spec-changed", after)
    if after["status"]["observedGeneration"] < after["metadata"]["generation"]:
        # The operator has not seen the change yet: kstatus and Argo CD must not call it current.
        assert health(after)["status"] == "Progressing"
    settled = eventually(
        lambda: (
            (b := get_backend(cluster, watched, "shop"))["status"]["observedGeneration"]
            == b["metadata"]["generation"]
            and conditions(b)["Ready"]["status"] == "True"
            and b["status"]["api"]["readyReplicas"] == 3
            and b
        ),
        timeout=120,
        what="generation 2 observed and Ready with 3 replicas",
    )
    assert health(settled)["status"] == "Healthy"
    assert_no_forbidden(sa_operator)


def test_a_child_owned_by_someone_else_is_stalled_and_degraded(
    cluster: LocalCluster, chart_install: tuple[str, str, str], sa_operator: OperatorProcess
) -> None:
    _, _, watched = chart_install
    # A ConfigMap with the name the operator wants, managed by someone else.
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "clash-redis-config",
                "namespace": watched,
                "labels": {"app.kubernetes.io/managed-by": "someone-else"},
            },
            "data": {"redis.conf": "# not the operator's\n"},
        }
    )
    cluster.apply(basic_backend(watched, name="clash"))
    stalled = eventually(
        lambda: (
            conditions(b := get_backend(cluster, watched, "clash")).get("Stalled", {}).get("status") == "True"
            and b
        ),
        timeout=90,
        what="the Stalled condition",
    )
    assert stalled["status"]["observedGeneration"] == stalled["metadata"]["generation"]
    assert conditions(stalled)["Ready"]["status"] == "False"
    capture("stalled", stalled)
    verdict = health(stalled)
    assert verdict["status"] == "Degraded"
    assert "clash-redis-config" in verdict["message"]
    wait = cluster.kubectl(
        "wait", "--for=condition=Ready", "scalablebackend/clash", "-n", watched, "--timeout=5s", check=False
    )
    assert wait.returncode != 0, "kubectl wait must not report a stalled backend as Ready"


# The nested suite takes 8 to 10 minutes on a busy machine: its own limit (the subprocess's
# 1500 s) applies, not the tier's 600 s per test.
@pytest.mark.timeout(1600)
def test_the_e2e_suite_passes_with_the_charts_credentials(
    cluster: LocalCluster, helm: Helm, tmp_path: Path
) -> None:
    """The lead's reconciler e2e suite (tests/e2e), its operator run with the chart's ServiceAccount.

    The nested run names its namespaces `rbac-*` (SBO_TEST_NAMESPACE_PREFIX), so that no other
    operator of this session serves them; the release watches that pattern: a ClusterRole, and
    list/watch on namespaces, which Kopf needs to match a pattern.
    """
    # But peering: the nested run needs a pattern (its namespaces are made as it goes), and the
    # chart refuses peering with a pattern (Kopf keeps a KopfPeering in every watched namespace).
    # The peering rules are checked by test_helm_lifecycle's upgrade to 2 replicas.
    suite = sorted(p for p in (REPO / "tests" / "e2e").glob("test_*.py") if p.name != "test_peering.py")
    assert suite, "tests/e2e has no test modules: the reconciler e2e suite is required for this proof"
    core = client.CoreV1Api(cluster.api)
    release_namespace = f"sbo-system-{secrets.token_hex(3)}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=release_namespace, labels=RESTRICTED))
    )
    release = release_name()
    try:
        helm.install(release, release_namespace, "watchNamespaces={rbac-*}")
        kubeconfig = service_account_kubeconfig(
            cluster, release_namespace, fullname(release), tmp_path / "kubeconfig"
        )
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "e2e", "-p", "no:cacheprovider",
             "--basetemp", str(tmp_path / "e2e"), *map(str, suite)],
            cwd=REPO,
            env={
                **os.environ,
                "SBO_TEST_OPERATOR_KUBECONFIG": str(kubeconfig),
                "SBO_TEST_NAMESPACE_PREFIX": "rbac",
            },
            capture_output=True,
            text=True,
            timeout=1500,
            check=False,
        )  # fmt: skip
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        assert result.returncode == 0, tail
        assert re.search(r"\d+ passed", result.stdout), tail
        logs = list((tmp_path / "e2e").rglob("operator*.log"))
        assert logs, "the e2e operator wrote no log"
        for path in logs:
            forbidden = refusals(path.read_text())
            assert forbidden == [], f"{path}: the chart's RBAC refused the operator:\n" + "\n".join(
                forbidden[:10]
            )
    finally:
        helm.uninstall(release, release_namespace)
        core.delete_namespace(release_namespace, propagation_policy="Background")


def log(operator: OperatorProcess) -> str:
    return operator.log_path.read_text()[-4000:]


def assert_no_forbidden(operator: OperatorProcess) -> None:
    forbidden = refusals(operator.log_path.read_text())
    assert forbidden == [], "the chart's RBAC refused the operator:\n" + "\n".join(forbidden[:10])
