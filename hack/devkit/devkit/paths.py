"""Where things are in the checkout, and where the built tools are."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

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


def load_hack_script(name: str) -> ModuleType:
    """A script of hack/ (``oci_image``: hack/oci_image.py) imported as a module, to test or reuse it."""
    spec = importlib.util.spec_from_file_location(name, REPO / "hack" / f"{name}.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while a class is made
    spec.loader.exec_module(module)
    return module
