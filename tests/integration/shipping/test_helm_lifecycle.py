"""The chart on the local control plane: install, what its ServiceAccount may and may not do,
upgrade, and an uninstall that keeps the CRD and the users' ScalableBackends."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from kubernetes import client

from devkit.cluster import LocalCluster, eventually
from devkit.paths import REPO
from tests.integration.shipping.conftest import Helm, fullname, release_name

pytestmark = pytest.mark.integration


def can_i(cluster: LocalCluster, account: str, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, subresource = resource.partition("/")
    if subresource:
        scope.append(f"--subresource={subresource}")
    result = cluster.kubectl("auth", "can-i", verb, resource, "--as", account, *scope, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def deployment_ready(apps: client.AppsV1Api, namespace: str, name: str) -> bool:
    deployment = apps.read_namespaced_deployment(name, namespace)
    wanted = deployment.spec.replicas
    return bool(
        deployment.status.observed_generation == deployment.metadata.generation
        and deployment.status.ready_replicas == wanted
        and deployment.status.updated_replicas == wanted
    )


def test_install_into_a_restricted_namespace_becomes_ready(
    helm: Helm, cluster: LocalCluster, apps: client.AppsV1Api, core: client.CoreV1Api, namespace: str
) -> None:
    release = release_name()
    helm.install(release, namespace, f"watchNamespaces={{{namespace}}}")
    try:
        name = fullname(release)
        assert deployment_ready(apps, namespace, name)
        pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={release}")
        assert [p.status.phase for p in pods.items] == ["Running"]
        # The namespace enforces "restricted": the pod exists, so admission let it in.
        labels = core.read_namespace(namespace).metadata.labels
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        status = yaml.safe_load(helm("status", release, "-n", namespace, "-o", "yaml").stdout)
        assert status["info"]["status"] == "deployed"
        assert "kubectl" in status["info"]["notes"]
        assert "wait --for=condition=Ready" in status["info"]["notes"]
        crd = cluster.kubectl("get", "crd", "scalablebackends.sbo.dev", "-o", "name", check=False)
        assert crd.returncode == 0, "the chart's crds/ installed the CRD"
    finally:
        helm.uninstall(release, namespace)


def test_with_exact_namespaces_the_service_account_can_only_what_it_needs(
    helm: Helm, cluster: LocalCluster, namespace: str, make_namespace: Callable[[str], str]
) -> None:
    watched = make_namespace("t-watched")
    other = make_namespace("t-other")
    release = release_name()
    helm.install(release, namespace, f"watchNamespaces={{{watched}}}", "replicaCount=2")
    try:
        account = f"system:serviceaccount:{namespace}:{fullname(release)}"
        allowed = [
            ("create", "secrets", watched),
            ("watch", "secrets", watched),
            ("patch", "deployments.apps", watched),
            ("delete", "statefulsets.apps", watched),
            ("patch", "scalablebackends.sbo.dev/status", watched),
            ("watch", "scalablebackends.sbo.dev", watched),
            ("create", "events", watched),
            ("patch", "kopfpeerings.kopf.dev", watched),
        ]
        for verb, resource, where in allowed:
            assert can_i(cluster, account, verb, resource, where), (
                f"must be able to {verb} {resource} in {where}"
            )
        forbidden = [
            ("get", "secrets", other),  # a namespace it does not watch
            ("list", "secrets", None),
            ("list", "scalablebackends.sbo.dev", other),
            ("create", "deployments.apps", other),
            ("update", "secrets", watched),  # Secrets are created once, never changed
            ("patch", "secrets", watched),
            ("delete", "secrets", watched),
            ("update", "scalablebackends.sbo.dev", watched),  # patch only: the autoscaler's replicas
            ("create", "scalablebackends.sbo.dev", watched),  # users own them
            ("delete", "scalablebackends.sbo.dev", watched),
            ("create", "clusterroles.rbac.authorization.k8s.io", None),
            ("create", "rolebindings.rbac.authorization.k8s.io", watched),
            ("escalate", "roles.rbac.authorization.k8s.io", watched),
            ("get", "pods", watched),
            ("create", "pods/exec", watched),
            ("list", "namespaces", None),
            ("list", "nodes", None),
            ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
            ("create", "secrets", namespace),  # not even in its own namespace
        ]
        for verb, resource, where in forbidden:
            assert not can_i(cluster, account, verb, resource, where), (
                f"must not {verb} {resource} in {where}"
            )
        assert cluster.kubectl("get", "kopfpeering", "-n", watched, "-o", "name").stdout.strip()
    finally:
        helm.uninstall(release, namespace)


def test_cluster_wide_the_service_account_still_cannot_escalate_or_change_secrets(
    helm: Helm, cluster: LocalCluster, namespace: str
) -> None:
    release = release_name()
    helm.install(release, namespace)
    try:
        account = f"system:serviceaccount:{namespace}:{fullname(release)}"
        assert can_i(cluster, account, "list", "secrets", None)
        assert can_i(cluster, account, "patch", "deployments.apps", None)
        for verb, resource in [
            ("create", "clusterroles.rbac.authorization.k8s.io"),
            ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
            ("bind", "clusterroles.rbac.authorization.k8s.io"),
            ("impersonate", "serviceaccounts"),
            ("patch", "secrets"),
            ("delete", "secrets"),
            ("get", "pods"),
            ("list", "namespaces"),
            ("delete", "namespaces"),
            ("create", "customresourcedefinitions.apiextensions.k8s.io"),
            ("patch", "clusterkopfpeerings.kopf.dev"),  # no peering with one replica
        ]:
            assert not can_i(cluster, account, verb, resource, None), f"must not {verb} {resource}"
    finally:
        helm.uninstall(release, namespace)


def test_upgrade_changes_settings_and_scales_to_peering_then_uninstall_keeps_crd_and_backends(
    helm: Helm,
    cluster: LocalCluster,
    apps: client.AppsV1Api,
    namespace: str,
    make_namespace: Callable[[str], str],
) -> None:
    watched = make_namespace("t-users")
    release = release_name()
    name = fullname(release)
    helm.install(release, namespace, f"watchNamespaces={{{watched}}}")
    try:
        backend = yaml.safe_load((REPO / "examples" / "basic.yaml").read_text())
        backend["metadata"]["namespace"] = watched
        cluster.apply(backend)
        first_uid = apps.read_namespaced_deployment(name, namespace).metadata.uid

        helm(
            "upgrade", release, str(REPO / "charts" / "scalable-backend-operator"), "-n", namespace,
            "--reuse-values", "--set", "operator.logLevel=DEBUG", "--set", "replicaCount=2",
            "--wait", "--timeout", "3m",
        )  # fmt: skip
        deployment = apps.read_namespaced_deployment(name, namespace)
        assert deployment.metadata.uid == first_uid, "upgraded in place, not replaced"
        env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
        assert env["SBO_LOG_LEVEL"] == "DEBUG"
        assert env["SBO_PEERING"] == "true"
        assert env["SBO_NAMESPACES"] == watched
        assert deployment_ready(apps, namespace, name)
        assert deployment.spec.replicas == 2
        peering_uid = cluster.kubectl(
            "get", "kopfpeering", "-n", watched, "-o", "jsonpath={.items[0].metadata.uid}"
        ).stdout.strip()
        assert peering_uid

        # A peering object created afresh lists no peers: every waiting replica would resume.
        helm(
            "upgrade", release, str(REPO / "charts" / "scalable-backend-operator"), "-n", namespace,
            "--reuse-values", "--set", "operator.workers=8", "--wait", "--timeout", "3m",
        )  # fmt: skip
        assert (
            cluster.kubectl(
                "get", "kopfpeering", "-n", watched, "-o", "jsonpath={.items[0].metadata.uid}"
            ).stdout.strip()
            == peering_uid
        ), "an upgrade keeps the peering object"
        history = yaml.safe_load(helm("history", release, "-n", namespace, "-o", "yaml").stdout)
        assert [h["status"] for h in history] == ["superseded", "superseded", "deployed"]

        helm("rollback", release, "1", "-n", namespace, "--wait", "--timeout", "3m")
        env = {
            e.name: e.value
            for e in apps.read_namespaced_deployment(name, namespace).spec.template.spec.containers[0].env
        }
        assert env["SBO_LOG_LEVEL"] == "INFO"
        assert env["SBO_PEERING"] == "false"
    finally:
        helm.uninstall(release, namespace)

    assert cluster.kubectl("get", "deployment", name, "-n", namespace, check=False).returncode != 0
    assert cluster.kubectl("get", "serviceaccount", name, "-n", namespace, check=False).returncode != 0
    assert cluster.kubectl("get", "role", name, "-n", watched, check=False).returncode != 0
    # What users own survives: the CRD (Helm never deletes crds/) and every ScalableBackend.
    assert cluster.kubectl("get", "crd", "scalablebackends.sbo.dev").returncode == 0
    eventually(
        lambda: cluster.kubectl("get", "scalablebackend", "shop", "-n", watched).returncode == 0,
        timeout=10,
        what="the ScalableBackend to still exist",
    )
