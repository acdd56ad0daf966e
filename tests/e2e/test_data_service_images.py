"""The operator's image settings: every data service runs the image its template gives, nothing else changes.

This is how tests and air-gapped clusters point the operator at local images or a registry mirror
(`SBO_POSTGRES_IMAGE`, `SBO_REDIS_IMAGE`, the chart's `dataServiceImages`); the pods here are
kwok's, so the images need not exist.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster
from tests.e2e.conftest import basic_backend, solo_operator, wait_ready

pytestmark = pytest.mark.e2e


def pod_images(template: client.V1PodTemplateSpec) -> set[str]:
    return {c.image for c in [*(template.spec.init_containers or []), *template.spec.containers]}


def test_the_data_services_run_the_images_the_operator_is_set_to(
    cluster: LocalCluster, crd: None, tmp_path: Path, apps: client.AppsV1Api
) -> None:
    settings = {
        "SBO_POSTGRES_IMAGE": "sbo.local/postgres:{version}",
        "SBO_REDIS_IMAGE": "mirror.example/library/redis:{version}",
    }
    with solo_operator(cluster, tmp_path, **settings) as (namespace, _):
        backend = basic_backend(namespace)
        cluster.apply(backend)
        wait_ready(cluster, namespace)
        statefulsets = apps.list_namespaced_stateful_set(namespace).items
        assert {s.metadata.name: pod_images(s.spec.template) for s in statefulsets} == {
            "shop-postgres": {"sbo.local/postgres:16"},
            "shop-redis": {"mirror.example/library/redis:7.2"},
        }
        deployments = apps.list_namespaced_deployment(namespace).items
        assert {d.metadata.name: pod_images(d.spec.template) for d in deployments} == {
            "shop-api": {backend["spec"]["image"]},
        }, "the app's own image is the spec's, whatever the settings"
