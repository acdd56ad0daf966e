"""Fixtures shared by every test tier.

* `cluster`: the local control plane, reused if it is already up, otherwise
  started for this session and stopped at its end.
* `namespace`: a fresh namespace per test that enforces Pod Security
  "restricted", deleted afterwards.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.support.cluster import LocalCluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster.ensure()
    yield local
    local.stop_if_started_here()


@pytest.fixture
def core(cluster: LocalCluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api)


@pytest.fixture
def apps(cluster: LocalCluster) -> client.AppsV1Api:
    return client.AppsV1Api(cluster.api)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[str]:
    # Readable (the test's name) and unique, so a re-run never waits for the
    # previous run's namespace to finish terminating.
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(cluster.api)
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=restricted)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")
