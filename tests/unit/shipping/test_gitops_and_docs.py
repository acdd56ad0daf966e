"""Argo CD Applications point at real things, argocd-cm carries the tested Lua, the docs keep promises."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from devkit.paths import REPO
from tests.unit.shipping.argocd_health import HEALTH_LUA
from tests.unit.shipping.support import CHART, helm_template, one

pytestmark = pytest.mark.unit

ARGOCD = REPO / "examples" / "argocd"


def application(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ARGOCD / name).read_text())
    assert loaded["apiVersion"] == "argoproj.io/v1alpha1"
    assert loaded["kind"] == "Application"
    return loaded


def test_the_operator_application_installs_this_chart_with_valid_values(tmp_path: Any) -> None:
    app = application("operator.yaml")
    source = app["spec"]["source"]
    assert (REPO / source["path"]) == CHART
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(source["helm"]["valuesObject"]))
    objects = helm_template(files=(values,), namespace=app["spec"]["destination"]["namespace"])
    assert one(objects, "Deployment")["spec"]["replicas"] == source["helm"]["valuesObject"]["replicaCount"]


def test_the_backend_application_applies_the_basic_example() -> None:
    app = application("shop.yaml")
    source = app["spec"]["source"]
    example = REPO / source["path"] / source["directory"]["include"]
    backend = yaml.safe_load(example.read_text())
    assert backend["kind"] == "ScalableBackend"
    assert backend["metadata"]["namespace"] == app["spec"]["destination"]["namespace"]
    ignored = app["spec"]["ignoreDifferences"][0]
    assert ignored["group"] == "sbo.dev"
    assert "/spec/api/replicas" in ignored["jsonPointers"]


def test_argocd_cm_carries_the_tested_health_check_verbatim() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert patch["data"]["resource.customizations.health.sbo.dev_ScalableBackend"] == HEALTH_LUA.read_text()


def test_the_gitops_doc_shows_flux_health_checks_and_kstatus() -> None:
    text = (REPO / "docs" / "gitops.md").read_text()
    flux = [doc for doc in _yaml_blocks(text) if doc.get("kind") == "Kustomization"]
    assert flux, "a Flux Kustomization example"
    checks = flux[0]["spec"]["healthChecks"]
    assert checks == [
        {"apiVersion": "sbo.dev/v1alpha1", "kind": "ScalableBackend", "name": "shop", "namespace": "demo"}
    ]
    assert "kubectl -n demo wait --for=condition=Ready" in text
    assert "observedGeneration" in text


def test_the_docs_link_what_they_promise() -> None:
    docs = REPO / "docs"
    for page in ("quickstart.md", "architecture.md", "upgrade-uninstall.md", "gitops.md"):
        text = (docs / page).read_text()
        for target in re.findall(r"\]\(([^)#]+\.(?:md|yaml|lua))\)", text):
            if "://" not in target:
                assert (docs / target).resolve().exists(), f"{page} links {target}"
    assert "```mermaid" in (docs / "architecture.md").read_text()
    quickstart = (docs / "quickstart.md").read_text()
    assert "hack/kind-e2e.sh" in quickstart
    assert "make demo" in quickstart
    assert "crd-reference.md" in (docs / "architecture.md").read_text()
    uninstall = (docs / "upgrade-uninstall.md").read_text()
    assert "helm uninstall" in uninstall
    assert "kept" in uninstall


def _yaml_blocks(markdown: str) -> list[dict[str, Any]]:
    blocks = re.findall(r"```yaml\n(.*?)```", markdown, re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if isinstance(doc, dict)]
