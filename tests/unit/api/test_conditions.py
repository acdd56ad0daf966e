"""The vocabulary of conditions."""

from __future__ import annotations

import pytest

from sbo_operator.api.conditions import ConditionType

pytestmark = pytest.mark.unit

AUTOSCALER_TYPES = (
    ConditionType.AUTOSCALING_ACTIVE,
    ConditionType.SCALING_LIMITED,
    ConditionType.METRICS_UNAVAILABLE,
)


@pytest.mark.parametrize("type", AUTOSCALER_TYPES)
def test_the_apis_autoscaler_conditions_have_no_prefix_the_workers_do(type: ConditionType) -> None:
    assert type.of_component("api") is type
    assert type.of_component("worker") == f"Worker{type}"
    assert type.of_component("worker") in ConditionType


def test_an_unknown_components_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="PoolerAutoscalingActive"):
        ConditionType.AUTOSCALING_ACTIVE.of_component("pooler")
