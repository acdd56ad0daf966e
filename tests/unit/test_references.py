"""Required Secret/ConfigMap references, and the messages that name the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.components import required_references
from sbo_operator.references import Reference, reference_problem, template_references

pytestmark = pytest.mark.unit


def backend_with_env(
    api_env: list[dict[str, Any]], worker_env: list[dict[str, Any]] | None = None
) -> ScalableBackend:
    spec: dict[str, Any] = {"image": "app:1", "api": {"env": api_env}}
    if worker_env is not None:
        spec["worker"] = {"command": ["worker"], "env": worker_env}
    return ScalableBackend.from_body({"metadata": {"name": "shop", "namespace": "demo"}, "spec": spec})


def test_only_required_references_are_checked() -> None:
    backend = backend_with_env(
        [
            {"name": "PLAIN", "value": "x"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "api"}}},
            {
                "name": "MAYBE",
                "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "x", "optional": True}},
            },
        ],
        worker_env=[{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}],
    )
    assert list(required_references(backend)) == [
        Reference("spec.api.env[1].valueFrom.secretKeyRef", "Secret", "tokens", "api"),
        Reference("spec.worker.env[0].valueFrom.configMapKeyRef", "ConfigMap", "settings", "mode"),
    ]


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        (
            None,
            "spec.api.env[1].valueFrom.secretKeyRef: Secret demo/tokens not found; "
            "create it, or set optional: true",
        ),
        (
            {"other"},
            "spec.api.env[1].valueFrom.secretKeyRef: Secret demo/tokens has no key 'api'; it has other",
        ),
        ({"api", "other"}, None),
    ],
    ids=["missing", "missing-key", "fine"],
)
def test_problem_messages(keys: set[str] | None, expected: str | None) -> None:
    reference = Reference("spec.api.env[1].valueFrom.secretKeyRef", "Secret", "tokens", "api")
    problem = reference_problem(reference, "demo", keys)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.startswith(expected)


def test_template_references_are_what_the_pods_cannot_start_without() -> None:
    deployment = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"envFrom": [{"configMapRef": {"name": "init-settings"}}]}],
                    "containers": [
                        {
                            "env": [
                                {"name": "A", "value": "plain"},
                                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "b"}}},
                                {
                                    "name": "C",
                                    "valueFrom": {
                                        "configMapKeyRef": {"name": "maybe", "key": "c", "optional": True}
                                    },
                                },
                            ],
                            "envFrom": [{"secretRef": {"name": "bulk"}}],
                        }
                    ],
                    "volumes": [
                        {"name": "tls", "secret": {"secretName": "tls"}},
                        {"name": "conf", "configMap": {"name": "conf"}},
                        {"name": "p", "projected": {"sources": [{"secret": {"name": "projected"}}]}},
                        {"name": "scratch", "emptyDir": {}},
                    ],
                }
            }
        },
    }
    assert template_references(deployment) == {
        ("ConfigMap", "init-settings"),
        ("Secret", "tokens"),
        ("Secret", "bulk"),
        ("Secret", "tls"),
        ("ConfigMap", "conf"),
        ("Secret", "projected"),
    }
    assert template_references({"kind": "Service", "spec": {"ports": []}}) == set()
