"""Backup fixtures: a MinIO per test (``make_object_store``) and the scripts on disk (``rig``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devkit import fixtures_servers
from devkit.backup_rig import BUCKET, BackupRig
from devkit.fixtures_servers import MakeObjectStore

make_object_store = fixtures_servers.make_object_store


@pytest.fixture
def rig(make_object_store: MakeObjectStore) -> Iterator[BackupRig]:
    """The scripts against a fresh store with the bucket made; servers it starts are destroyed after."""
    backup_rig = BackupRig.create(make_object_store(bucket=BUCKET))
    yield backup_rig
    backup_rig.cleanup()
