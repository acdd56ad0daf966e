"""spec.networkPolicies: the pydantic mirror refuses what the CRD's schema and CEL refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from sbo_operator.api.v1alpha1 import NetworkPoliciesSpec
from sbo_operator.api.v1alpha1.network import LABEL_KEY_MESSAGE, LABEL_VALUE_MESSAGE, PEER_MESSAGE
from tests.unit.factories import backend_from

pytestmark = pytest.mark.unit


def test_absent_by_default_so_nothing_changes() -> None:
    assert backend_from({}).spec.network_policies is None


def test_egress_defaults_off_and_peers_parse() -> None:
    spec = NetworkPoliciesSpec.model_validate(
        {"appIngressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}]}
    )
    assert spec.egress is False
    assert spec.app_ingress_from is not None
    assert spec.app_ingress_from[0].pod_selector is None


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        pytest.param({}, PEER_MESSAGE, id="no-selector"),
        pytest.param({"podSelector": {"matchLabels": {"bad key": "x"}}}, LABEL_KEY_MESSAGE, id="key"),
        pytest.param(
            {"podSelector": {"matchLabels": {"a/b/c": "x"}}}, LABEL_KEY_MESSAGE, id="key-two-slashes"
        ),
        pytest.param({"podSelector": {"matchLabels": {"app": "x" * 64}}}, "at most 63", id="value-too-long"),
        pytest.param({"podSelector": {"matchLabels": {"app": "-x"}}}, LABEL_VALUE_MESSAGE, id="value"),
    ],
)
def test_malformed_peers_are_refused_with_the_crds_message(peer: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.split(",")[0].replace("(", r"\(")):
        NetworkPoliciesSpec.model_validate({"appIngressFrom": [peer]})
