"""Integration fixtures: the checked-in CRD on the local control plane, with no operator running."""

from __future__ import annotations

import pytest

from devkit.backends import install_checked_in_crd
from devkit.cluster import LocalCluster


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> None:
    """The checked-in CRD, installed (idempotently) and served."""
    install_checked_in_crd(cluster)
