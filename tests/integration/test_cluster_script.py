"""hack/cluster.sh on its failure path: a failed "up" leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devkit.paths import REPO

pytestmark = pytest.mark.integration


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # the process ended meanwhile
        if text in cmdline:
            found.append(cmdline)
    return found


def test_failed_up_stops_the_components_it_started(tmp_path: Path) -> None:
    local_dir = tmp_path / "control-plane"
    env = {
        **os.environ,
        "SBO_LOCAL_DIR": str(local_dir),
        "SBO_PORT_BASE": "22440",
        "SBO_KWOK_PORT": "99999",  # kwok cannot listen there, after etcd and the apiserver started
    }
    done = subprocess.run(
        [str(REPO / "hack" / "cluster.sh"), "up"], env=env, capture_output=True, text=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "kwok exited during start-up" in output
    assert "kube-apiserver: stopping" in output
    assert processes_mentioning(str(local_dir)) == []
