"""The contract every registered component keeps, checked for each entry of the registry."""

from __future__ import annotations

import pytest

from sbo_operator.api.v1alpha1 import SecretNames
from sbo_operator.builders.labels import COMPONENT_LABEL
from sbo_operator.components import COMPONENTS, autoscaling_targets, generated_secrets
from sbo_operator.components.base import OperatorInputs
from tests.unit.factories import load_example, snapshot, wanted_once_running

pytestmark = pytest.mark.unit

EXAMPLES = ("basic.yaml", "full.yaml")


def test_names_and_conditions_are_unique() -> None:
    names = [component.name for component in COMPONENTS]
    assert len(set(names)) == len(names)
    backend = load_example("full.yaml")
    body = backend.model_dump(mode="json", by_alias=True, exclude_none=True)
    fragments = [c.status(backend, snapshot(body), None) for c in COMPONENTS]
    types = [fragment.condition.type for fragment in fragments if fragment is not None]
    assert len(set(types)) == len(types)


@pytest.mark.parametrize("example", EXAMPLES)
def test_a_component_plans_only_children_labelled_as_its_own(example: str) -> None:
    backend = load_example(example)
    running = snapshot(backend.model_dump(mode="json", by_alias=True, exclude_none=True))
    for component in COMPONENTS:
        for manifest in component.plan(backend, running, operator=OperatorInputs()).manifests:
            assert manifest["metadata"]["labels"][COMPONENT_LABEL] == component.name, manifest["metadata"][
                "name"
            ]


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_child_belongs_to_exactly_one_component(example: str) -> None:
    keys = [(m["kind"], m["metadata"]["name"]) for m in wanted_once_running(load_example(example))]
    assert len(set(keys)) == len(keys)


def test_generated_secrets_are_named_in_the_status() -> None:
    ids = [secret.id for secret in generated_secrets(load_example("full.yaml"))]
    assert len(set(ids)) == len(ids)
    assert set(ids) <= set(SecretNames.model_fields)


def test_autoscaled_components_have_replicas_in_the_spec_for_the_scheduler_to_patch() -> None:
    backend = load_example("full.yaml")
    targets = autoscaling_targets(backend)
    assert set(targets) == {"api", "worker"}
    for name, target in targets.items():
        spec = getattr(backend.spec, name)
        assert "replicas" in type(spec).model_fields, f"spec.{name}.replicas"
        assert target.replicas == spec.replicas
