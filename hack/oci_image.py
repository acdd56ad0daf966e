#!/usr/bin/env python3
"""Packs static binaries into a one-layer OCI image archive for `ctr images import`.

    hack/oci_image.py --name sbo.local/pause:local --out pause.tar \
        --file /path/to/pause:/pause --entrypoint /pause

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) in a
tar. It is byte-reproducible: the same inputs give the same digests, because every
tar entry has a fixed owner, mode and mtime. No registry, no daemon, no network.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import tarfile
from pathlib import Path

# Mount points the runtime binds over (/etc/hosts, /etc/resolv.conf, ...) or
# pods write to; present so a read-only root filesystem needs no creation.
IMAGE_DIRECTORIES = ("dev", "etc", "proc", "sys", "tmp", "var", "var/run")
NOBODY = "65532:65532"


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def entry(name: str, *, mode: int, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        if name == "tmp":
            info.mode = 0o1777
    else:
        info.size = len(data)
    return info, data


def build_layer(files: list[tuple[Path, str]]) -> bytes:
    entries = [entry(directory, mode=0o755) for directory in IMAGE_DIRECTORIES]
    for source, target in files:
        entries.append(entry(target.lstrip("/"), mode=0o755, data=source.read_bytes()))
    return tar_bytes(entries)


def blob(data: bytes) -> tuple[str, bytes]:
    return f"sha256:{hashlib.sha256(data).hexdigest()}", data


def canonical_json(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def build_archive(
    *, name: str, files: list[tuple[Path, str]], entrypoint: list[str], user: str, architecture: str
) -> bytes:
    layer_digest, layer = blob(build_layer(files))
    config_digest, config = blob(
        canonical_json(
            {
                "architecture": architecture,
                "os": "linux",
                "config": {"Entrypoint": entrypoint, "User": user, "WorkingDir": "/"},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            }
        )
    )
    manifest_digest, manifest = blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer_digest,
                        "size": len(layer),
                    }
                ],
            }
        )
    )
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest),
                "platform": {"architecture": architecture, "os": "linux"},
                # containerd names the imported image after the first; other tools read the second.
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rpartition(":")[2],
                },
            }
        ],
    }
    entries = [entry("blobs", mode=0o755), entry("blobs/sha256", mode=0o755)]
    for digest, data in ((layer_digest, layer), (config_digest, config), (manifest_digest, manifest)):
        entries.append(entry(f"blobs/sha256/{digest.removeprefix('sha256:')}", mode=0o644, data=data))
    entries.append(entry("oci-layout", mode=0o644, data=canonical_json({"imageLayoutVersion": "1.0.0"})))
    entries.append(entry("index.json", mode=0o644, data=canonical_json(index)))
    return tar_bytes(entries)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--name", required=True, help="image reference, e.g. sbo.local/pause:local")
    parser.add_argument("--out", required=True, type=Path, help="the archive to write")
    parser.add_argument(
        "--file",
        action="append",
        required=True,
        metavar="SRC:DEST",
        help="a host file and its path in the image",
    )
    parser.add_argument("--entrypoint", required=True, nargs="+")
    parser.add_argument("--user", default=NOBODY)
    parser.add_argument("--architecture", default="amd64", help="GOARCH naming, e.g. amd64 or arm64")
    args = parser.parse_args()
    files = [(Path(source), target) for source, _, target in (spec.partition(":") for spec in args.file)]
    archive = build_archive(
        name=args.name,
        files=files,
        entrypoint=args.entrypoint,
        user=args.user,
        architecture=args.architecture,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_bytes(archive)
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
