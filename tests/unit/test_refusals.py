"""The API server's refusals of a child write, as the Problems that name the object, the reason and the fix.

The messages are the real apiserver's (v1.31), as the e2e test sees them.
"""

from __future__ import annotations

import pytest

from sbo_operator.refusals import refusal_problem

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("code", "message", "reason", "fix"),
    [
        pytest.param(
            403,
            'secrets "shop-redis" is forbidden: exceeded quota: no-secrets, requested: secrets=1, '
            "used: secrets=0, limited: secrets=0",
            "QuotaExceeded",
            "raise or remove ResourceQuota demo/no-secrets",
            id="quota",
        ),
        pytest.param(
            403,
            'secrets is forbidden: User "system:serviceaccount:sbo:sbo-operator" cannot create resource '
            '"secrets" in API group "" in the namespace "demo"',
            "ChildRejected",
            "grant the operator's ServiceAccount `create` on Secret in demo",
            id="rbac",
        ),
        pytest.param(
            400,
            'admission webhook "policy.example.com" denied the request: no Secrets here',
            "ChildRejected",
            "change the admission webhook or policy named above, or exempt namespace demo",
            id="webhook",
        ),
        pytest.param(
            403,
            "secrets \"shop-redis\" is forbidden: ValidatingAdmissionPolicy 'no-secrets' with binding "
            "'no-secrets' denied request: failed expression: false",
            "ChildRejected",
            "change the admission webhook or policy named above",
            id="admission-policy",
        ),
        pytest.param(
            422,
            'Secret "shop-redis" is invalid: metadata.labels: Invalid value: "x": must be 63 characters',
            "ChildRejected",
            "fix the spec field the message names",
            id="invalid",
        ),
        pytest.param(
            429,
            "too many requests",
            "ChildRejected",
            "the operator retries with a growing delay",
            id="other",
        ),
    ],
)
def test_a_refusal_names_the_object_the_reason_and_the_fix(
    code: int, message: str, reason: str, fix: str
) -> None:
    problem = refusal_problem(
        verb="create", kind="Secret", name="shop-redis", namespace="demo", code=code, message=message
    )
    assert problem.reason == reason
    assert problem.message.startswith(f"the API server refused to create Secret shop-redis (HTTP {code}): ")
    assert message in problem.message, "the API server's own words, which name the rule or field"
    assert fix in problem.message
