"""Labels and selectors of the children."""

from __future__ import annotations

import pytest

from sbo_operator.builders.labels import Component, api_selector_string, common_labels, selector_labels
from tests.unit.factories import backend_from

pytestmark = pytest.mark.unit


def test_selector_is_a_subset_of_the_labels_and_excludes_mutable_ones() -> None:
    backend = backend_from({})
    selector = selector_labels(backend, Component.API)
    labels = common_labels(backend, Component.API)
    assert selector.items() <= labels.items()
    assert set(selector) == {
        "app.kubernetes.io/component",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/name",
    }
    assert api_selector_string(backend) == (
        "app.kubernetes.io/component=api,app.kubernetes.io/instance=shop,app.kubernetes.io/name=scalable-backend"
    )


def test_two_backends_in_one_namespace_select_disjoint_pods() -> None:
    assert selector_labels(backend_from({}, name="a"), Component.API) != selector_labels(
        backend_from({}, name="b"), Component.API
    )
