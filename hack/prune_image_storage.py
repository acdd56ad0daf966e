#!/usr/bin/env python3
"""Removes the dangling images rebuilds leave in buildah's storage; `make images` runs it after the build.

    hack/prune_image_storage.py                  prune the shared cache's storage (root)
    hack/prune_image_storage.py --work-dir DIR   prune DIR/storage instead (what the test does)

Each rebuild with `buildah bud --layers` untags the previous image and the layers only it used;
under vfs every layer is a full copy of its root filesystem (about 630 MB per operator rebuild),
and a day of rebuilds filled a 56 GB disk. `buildah rmi --prune` removes exactly the dangling
images (untagged, and no image built on them): the tagged images stay, the Python base the
Dockerfiles build FROM among them, and so do the untagged layers under a tagged image, which are
the `--layers` cache the next build reuses.

Invariant: the prune runs on hack/build_images.py's storage with its storage flags, environment
and lock, never beside a build; it creates no storage, and leaves BUILDAH_HOST_PATHS as it found
them. It lives apart from build_images.py because that file's hash is in every image's cache key;
importing it changes nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import build_images


def disk_usage(directory: Path) -> int:
    """Bytes of disk the directory's files take (each hard link counted once), as `du` reports them."""
    out = subprocess.run(
        ["du", "--summarize", "--one-file-system", "--block-size=1", str(directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[0])


def prune(work_dir: Path) -> str:
    """Prunes WORK_DIR/storage under WORK_DIR/lock; returns the one line that says what it freed."""
    storage = work_dir / "storage"
    if not storage.is_dir():
        return f"prune_image_storage: no buildah storage at {storage}; nothing to prune"
    with open(work_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Only buildah's storage is touched: no archive is read, so no images directory is needed.
        builder = build_images.Builder(images_dir=work_dir, work_dir=work_dir)
        strays = [path for path in build_images.BUILDAH_HOST_PATHS if not path.exists()]
        try:
            before = disk_usage(storage)
            removed = builder.buildah("rmi", "--prune", capture=True).split()
            after = disk_usage(storage)
        finally:
            for stray in strays:
                shutil.rmtree(stray, ignore_errors=True)
    return (
        f"prune_image_storage: removed {len(removed)} dangling image(s) from {storage}: "
        f"{before / 1e6:.0f} MB -> {after / 1e6:.0f} MB (freed {(before - after) / 1e6:.0f} MB)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="hack/build_images.py's build directory (default: image-build beside the images directory)",
    )
    args = parser.parse_args(argv)
    work_dir = args.work_dir or build_images.images_dir().parent / "image-build"
    if (work_dir / "storage").is_dir():
        if os.geteuid() != 0:
            raise SystemExit("prune_image_storage: run as root (buildah's storage belongs to root)")
        if shutil.which("buildah") is None:
            raise SystemExit(
                "prune_image_storage: buildah is not installed; run `hack/install-tools.sh image-tools`"
            )
    print(prune(work_dir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
