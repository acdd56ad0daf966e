"""Fixtures shared by every test tier.

* `cluster`: the local control plane, reused if it is already up, otherwise
  started for this session and stopped at its end.
* `namespace`: a fresh namespace per test that enforces Pod Security
  "restricted", deleted afterwards.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator

import pytest
from kubernetes import client

from devkit.cluster import LocalCluster

TIERS = ("unit", "integration", "e2e", "node")


def namespace_prefix() -> str:
    """`t` unless SBO_TEST_NAMESPACE_PREFIX says otherwise, e.g. for a nested run whose own
    operator must be the only one serving its namespaces."""
    return os.environ.get("SBO_TEST_NAMESPACE_PREFIX", "t")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier, so `-m unit` and friends miss nothing."""
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(tier) for tier in TIERS)]
    if unmarked:
        raise pytest.UsageError(
            f"tests without a tier marker ({', '.join(TIERS)}): {', '.join(unmarked[:10])}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A skipped test is a failed test: missing prerequisites must fail, never pass silently."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped, which this project counts as a failure: {report.longrepr}"


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
    """A restricted namespace that the e2e tier's operator serves (its name matches the prefix)."""
    yield from restricted_namespace(request, cluster, namespace_prefix())


@pytest.fixture
def unserved_namespace(request: pytest.FixtureRequest, cluster: LocalCluster) -> Iterator[str]:
    """A restricted namespace no test operator serves: for tests that write the status themselves."""
    yield from restricted_namespace(request, cluster, "unserved")


def restricted_namespace(request: pytest.FixtureRequest, cluster: LocalCluster, prefix: str) -> Iterator[str]:
    # Readable (the test's name) and unique, so a re-run never waits for the
    # previous run's namespace to finish terminating.
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{prefix}-{base}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(cluster.api)
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=restricted)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")
