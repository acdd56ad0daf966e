"""``spec.networkPolicies``: optional NetworkPolicies for the app tier and egress limits for every pod.

Absent (the default), the operator keeps only the ingress policies of PostgreSQL and Redis, as
before. Label keys and values follow the Kubernetes rules, checked at admission by the schema
and CEL, and mirrored here.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from sbo_operator.api.base import ApiModel, cel_rules
from sbo_operator.api.formats import StringFormat

__all__ = ["LabelSelector", "NetworkPoliciesSpec", "NetworkPolicyPeer"]

# An optional DNS-subdomain prefix and "/", then a name of at most 63 characters.
_LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[a-zA-Z0-9]([-._a-zA-Z0-9]{0,61}[a-zA-Z0-9])?$"
)
LABEL_KEY_MESSAGE = (
    "label keys are an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit, e.g. kubernetes.io/metadata.name"
)
LABEL_VALUE_MESSAGE = (
    "label values are empty or at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit"
)
LabelValue = Annotated[
    str,
    StringFormat(
        r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$",
        LABEL_VALUE_MESSAGE,
        max_length=63,
        min_length=0,
    ),
]
PEER_MESSAGE = "a peer needs a namespaceSelector, a podSelector or both"


class LabelSelector(ApiModel):
    """Selects objects by their labels; empty selects all (e.g. every namespace)."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {
                "rule": f"!has(self.matchLabels) || self.matchLabels.all(key, size(key) <= 317 && "
                f"key.matches(r'{_LABEL_KEY_PATTERN}'))",
                "message": LABEL_KEY_MESSAGE,
                "fieldPath": ".matchLabels",
            }
        )
    )

    match_labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=16, description="Labels the objects must all have, e.g. {app: x}."
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> LabelSelector:
        if not all(len(key) <= 317 and re.fullmatch(_LABEL_KEY_PATTERN, key) for key in self.match_labels):
            raise ValueError(f"matchLabels: {LABEL_KEY_MESSAGE}")
        return self


class NetworkPolicyPeer(ApiModel):
    """Pods allowed to connect, as a NetworkPolicy peer: pods in namespaces, or both selectors ANDed."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            {"rule": "has(self.namespaceSelector) || has(self.podSelector)", "message": PEER_MESSAGE}
        )
    )

    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Namespaces whose pods may connect, e.g. {matchLabels: {kubernetes.io/metadata.name: "
        "ingress-nginx}}. Absent: the backend's namespace.",
    )
    pod_selector: LabelSelector | None = Field(
        default=None, description="Pods (in those namespaces) that may connect. Absent: all of them."
    )

    @model_validator(mode="after")
    def _check_cel_rules(self) -> NetworkPolicyPeer:
        if self.namespace_selector is None and self.pod_selector is None:
            raise ValueError(PEER_MESSAGE)
        return self


class NetworkPoliciesSpec(ApiModel):
    """NetworkPolicies for the app tier and egress limits, for clusters that deny by default."""

    app_ingress_from: list[NetworkPolicyPeer] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Who may connect to the api (its port) and the worker: e.g. the ingress controller's "
            "namespace and Prometheus. The migrations Job accepts nothing. Absent: app ingress is "
            "not restricted. Empty: nobody may connect."
        ),
    )
    egress: bool = Field(
        default=False,
        description=(
            "Limit every pod's egress to what it needs: the api, worker and migrations reach "
            "PostgreSQL and Redis, PostgreSQL's replicas its primary, and all of them DNS "
            "(kube-dns in kube-system). Nothing else: an external service the app calls needs "
            "a policy of your own."
        ),
    )
