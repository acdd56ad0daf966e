"""The workflows pass actionlint, the scripts pass shellcheck, and each does the steps it promises."""

from __future__ import annotations

import re

import pytest
import yaml

from devkit.paths import REPO
from tests.unit.shipping.support import run, tool

pytestmark = pytest.mark.unit

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
KIND_E2E = REPO / "hack" / "kind-e2e.sh"


def test_actionlint_is_clean() -> None:
    assert [w.name for w in WORKFLOWS] == ["ci.yml", "e2e-kind.yml"]
    result = run(tool("actionlint"), "-color=false", *WORKFLOWS, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", ["hack/kind-e2e.sh", "hack/install-tools.sh", "hack/cluster.sh"])
def test_shellcheck_is_clean(script: str) -> None:
    result = run(tool("shellcheck"), "-x", script, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kind_script_does_every_step_in_order() -> None:
    text = "\n".join(line for line in KIND_E2E.read_text().splitlines() if not line.lstrip().startswith("#"))
    steps = [
        r"kind create cluster",
        r"docker build --tag \"\$operator_image\" \"\$repo\"",
        r"docker build --tag \"\$app_image\" --file \"\$repo/sample-app/Dockerfile\"",
        r"kind load docker-image",
        r"kube-prometheus-stack",
        r"helm install sbo",
        r"helm test sbo",
        r"kubectl apply -f \"\$repo/examples/basic.yaml\"",
        r"wait --for=condition=Ready scalablebackend/shop",
        r"port-forward service/shop-api",
        r"curl .*127\.0\.0\.1:18080/readyz",
        r"helm uninstall sbo",
        r"kind delete cluster",
    ]
    positions = []
    for step in steps:
        match = re.search(step, text)
        assert match, f"hack/kind-e2e.sh does not {step}"
        positions.append(match.start())
    # kind delete lives in the EXIT trap, defined before the steps; everything else is in order.
    assert positions[:-1] == sorted(positions[:-1])
    assert "trap cleanup EXIT" in text
    assert "pod-security.kubernetes.io/enforce=restricted" in text


def test_the_kind_workflow_runs_the_script_on_two_kubernetes_versions() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "e2e-kind.yml").read_text())
    (job,) = workflow["jobs"].values()
    versions = {entry["kubernetes"] for entry in job["strategy"]["matrix"]["include"]}
    assert len(versions) == 2
    assert any(step.get("run") == "hack/kind-e2e.sh" for step in job["steps"])


def test_ci_runs_lint_unit_and_the_local_control_plane_tiers() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    commands = {
        name: " ".join(step.get("run", "") for step in job["steps"]) for name, job in workflow["jobs"].items()
    }
    assert "make lint" in commands["lint"]
    assert "--check" in commands["lint"]
    assert "make test-unit" in commands["unit"]
    assert "make test" in commands["local-control-plane"].split("\n")[0]
