"""hack/oci_image.py writes a valid, reproducible OCI image layout for `ctr images import`."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from devkit.paths import load_hack_script

pytestmark = pytest.mark.unit


def load_oci_image() -> ModuleType:
    return load_hack_script("oci_image")


def build(tmp_path: Path) -> bytes:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    archive: bytes = load_oci_image().build_archive(
        name="sbo.local/pause:local",
        files=[(binary, "/pause")],
        entrypoint=["/pause"],
        user="65532:65532",
        architecture="amd64",
    )
    return archive


def blob(files: dict[str, bytes], digest: str) -> bytes:
    return files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    assert build(tmp_path) == build(tmp_path)


def test_every_digest_names_its_blob_and_the_index_names_the_image(tmp_path: Path) -> None:
    files = members(build(tmp_path))
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rpartition("/")[2]
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "sbo.local/pause:local"
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    manifest = json.loads(blob(files, entry["digest"]))
    config = json.loads(blob(files, manifest["config"]["digest"]))
    assert config["config"] == {"Entrypoint": ["/pause"], "User": "65532:65532", "WorkingDir": "/"}
    (layer,) = manifest["layers"]
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]
    with tarfile.open(fileobj=io.BytesIO(blob(files, layer["digest"]))) as tar:
        pause = tar.getmember("pause")
        assert (pause.mode, pause.uid, pause.mtime) == (0o755, 0, 0)
        assert tar.getmember("tmp").mode == 0o1777
