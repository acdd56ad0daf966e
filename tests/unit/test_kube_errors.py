"""How kube.py maps the API server's refusals; bodies as the real API server sends them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.aio.client.exceptions import ApiException

from sbo_operator.kube import ApplyRejected, Kube, NamespaceTerminating, ObjectGone
from sbo_operator.metrics import OperatorMetrics

pytestmark = pytest.mark.unit

SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-redis", "namespace": "demo"}}
TERMINATING = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": 'secrets "shop-redis" is forbidden: unable to create new content in namespace demo '
    "because it is being terminated",
    "reason": "Forbidden",
    # A StatusCause's type is serialized as "reason".
    "details": {
        "name": "shop-redis",
        "kind": "secrets",
        "causes": [
            {
                "reason": "NamespaceTerminating",
                "message": "namespace demo is being terminated",
                "field": "metadata.namespace",
            }
        ],
    },
    "code": 403,
}
RBAC = {
    "kind": "Status",
    "status": "Failure",
    "message": 'secrets is forbidden: User "x" cannot create resource "secrets"',
    "reason": "Forbidden",
    "details": {"kind": "secrets"},
    "code": 403,
}
NAMESPACE_GONE = {
    "kind": "Status",
    "message": 'namespaces "demo" not found',
    "reason": "NotFound",
    "code": 404,
}


class Refusing:
    """A dynamic client whose every write fails with one API error."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.error = ApiException(status=status, reason=body["reason"])
        self.error.body = json.dumps(body)
        self.resources = self

    async def get(self, **_: Any) -> object:
        return object()

    async def create(self, *_: Any, **__: Any) -> None:
        raise self.error

    async def patch(self, *_: Any, **__: Any) -> None:
        raise self.error


def kube(status: int, body: dict[str, Any]) -> Kube:
    return Kube(None, Refusing(status, body), field_manager="test", metrics=OperatorMetrics.create())  # type: ignore[arg-type]


async def test_a_namespace_being_deleted_is_namespace_terminating_for_create_and_apply() -> None:
    with pytest.raises(NamespaceTerminating, match="being terminated"):
        await kube(403, TERMINATING).create(SECRET)
    with pytest.raises(NamespaceTerminating):
        await kube(403, TERMINATING).apply(SECRET, force=True)
    assert issubclass(NamespaceTerminating, ObjectGone), "the reconcile ends quietly, as for a gone namespace"


async def test_a_gone_namespace_is_object_gone() -> None:
    with pytest.raises(ObjectGone):
        await kube(404, NAMESPACE_GONE).create(SECRET)


async def test_other_refusals_are_not_mistaken_for_a_terminating_namespace() -> None:
    with pytest.raises(ApplyRejected, match="cannot create"):
        await kube(403, RBAC).apply(SECRET, force=True)
    # A refused create is a refusal too (issue 15 item 10), not an error of the server.
    with pytest.raises(ApplyRejected, match="cannot create"):
        await kube(403, RBAC).create(SECRET)
