"""`hack/install-tools.sh` on a warm cache: every tool is recognised as built, none is built again.

`make test` builds the tools before the tests run, so by now the cache is warm. A version check
that never matches rebuilds a tool on every run: kube-router printed its version on stderr,
which the check dropped, so each `make tools` spent minutes relinking it and removed the binary
under any real node running meanwhile.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from devkit.paths import REPO

pytestmark = pytest.mark.integration

CACHED = re.compile(r"^==> .*(: already (built|installed)| already installed| ready in .*)$")


def test_a_second_run_builds_nothing() -> None:
    run = subprocess.run(
        [str(REPO / "hack" / "install-tools.sh"), "all"], capture_output=True, text=True, timeout=3600
    )
    assert run.returncode == 0, run.stderr
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert lines, "install-tools.sh said nothing"
    rebuilt = [line for line in lines if not CACHED.match(line)]
    assert rebuilt == [], "built again on a warm cache"
