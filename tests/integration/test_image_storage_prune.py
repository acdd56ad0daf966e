"""hack/prune_image_storage.py removes exactly the dangling images from buildah's storage.

`make images` runs it after hack/build_images.py: each rebuild with `--layers` leaves the previous
build's images untagged, and under vfs every layer is a full copy (a developer's storage reached
56 GB). The prune must keep every tagged image (build_images builds FROM the tagged Python base
after checking `in_storage`) and the untagged layers under a tagged one (the `--layers` cache),
and leave buildah's host-wide default paths as it found them. Its images are a few files in a
storage root of this test's own, never the shared cache.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devkit.paths import REPO, load_hack_script

pytestmark = pytest.mark.integration

PRUNE = REPO / "hack" / "prune_image_storage.py"
TAGGED = "sbo.local/prune-test:kept"
# A vfs layer is a full copy of its root filesystem, so each dangling image below holds this twice or more.
PAYLOAD_BYTES = 4_000_000


@pytest.fixture(scope="module")
def build_images() -> ModuleType:
    return load_hack_script("build_images")


def buildah_host_paths(build_images: ModuleType) -> tuple[Path, ...]:
    """The host paths buildah uses by default; build_images cleans the first, none may appear."""
    return (*build_images.BUILDAH_HOST_PATHS, Path("/run/containers"))


def existing(paths: tuple[Path, ...]) -> list[Path]:
    return [path for path in paths if path.exists() or path.is_symlink()]


def commit(builder: Any, base: str, content: Path, name: str = "") -> str:
    """One layer adding CONTENT on BASE ("scratch" or an image id), committed as NAME or untagged."""
    container = builder.buildah("from", "--quiet", "--pull=never", base, capture=True)
    builder.buildah("add", "--quiet", container, str(content), f"/{content.name}")
    return str(
        builder.buildah("commit", "--quiet", "--rm", container, *([name] if name else []), capture=True)
    )


def image_ids(builder: Any) -> set[str]:
    listed = builder.buildah("images", "--all", "--quiet", "--no-trunc", capture=True)
    return {line.removeprefix("sha256:") for line in listed.splitlines()}


def run_prune(work_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PRUNE), "--work-dir", str(work_dir)], capture_output=True, text=True, timeout=300
    )


def test_the_prune_removes_the_dangling_images_and_keeps_the_tagged_ones_and_their_layers(
    build_images: ModuleType, tmp_path: Path
) -> None:
    if shutil.which("buildah") is None:
        pytest.fail("buildah is required and not installed: run `hack/install-tools.sh image-tools`")
    host_paths = buildah_host_paths(build_images)
    before_setup = existing(host_paths)
    builder = build_images.Builder(images_dir=tmp_path, work_dir=tmp_path)
    (tmp_path / "tmp").mkdir()
    files = tmp_path / "files"
    files.mkdir()
    for name in ("cached", "current", "old"):
        (files / name).write_text(f"{name}\n")
    (files / "payload").write_bytes(bytes(range(256)) * (PAYLOAD_BYTES // 256))
    try:
        # The current build: an untagged layer (what `--layers` caches) under the tagged image.
        cached_layer = commit(builder, "scratch", files / "cached")
        tagged = commit(builder, cached_layer, files / "current", TAGGED)
        # The previous build, untagged by the rebuild: a dangling image on a layer only it used.
        old_layer = commit(builder, "scratch", files / "payload")
        old_image = commit(builder, old_layer, files / "old")
        assert image_ids(builder) == {cached_layer, tagged, old_layer, old_image}
    finally:
        # The commits' own blob-info cache (/var/lib/containers) goes, so the prune starts from a clean host.
        for path in existing(host_paths):
            if path not in before_setup:
                shutil.rmtree(path, ignore_errors=True)
    before_prune = existing(host_paths)

    pruned = run_prune(tmp_path)

    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert image_ids(builder) == {cached_layer, tagged}
    assert builder.in_storage(build_images.DebianImage(name=TAGGED, archive="", packages=()))
    assert existing(host_paths) == before_prune
    summary = pruned.stdout.strip()
    assert "removed 2 dangling image(s)" in summary, summary
    freed = re.search(r"(\d+) MB -> (\d+) MB \(freed (\d+) MB\)$", summary)
    assert freed, summary
    before_mb, after_mb, freed_mb = map(int, freed.groups())
    assert freed_mb >= 2 * PAYLOAD_BYTES / 1e6 - 1, summary
    assert before_mb - after_mb == pytest.approx(freed_mb, abs=1), summary


def test_without_storage_the_prune_does_nothing(tmp_path: Path) -> None:
    work_dir = tmp_path / "image-build"

    pruned = run_prune(work_dir)

    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "nothing to prune" in pruned.stdout
    assert not work_dir.exists()
