"""Where things are in the checkout, and where the built tools are."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]  # hack/devkit/devkit/paths.py
SAMPLE_APP = REPO / "sample-app"
CRD = REPO / "crds" / "sbo.dev_scalablebackends.yaml"
EXAMPLES = REPO / "examples"


@functools.cache
def tools_bin_dir() -> Path:
    """The directory hack/install-tools.sh builds kube-apiserver, kubectl, kwok... into."""
    out = subprocess.run(
        [str(REPO / "hack" / "install-tools.sh"), "bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())
