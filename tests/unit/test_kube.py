"""kube.Kube: the API's refusals become the exceptions reconcile acts on, and writes are counted.

The answers come from kmock, which can serve a 409 or 422 on cue.
"""

from __future__ import annotations

import kmock
import pytest

from sbo_operator.kube import ApplyConflict, ApplyRejected, Kube, ObjectGone
from sbo_operator.metrics import OperatorMetrics

pytestmark = [pytest.mark.unit, pytest.mark.kmock(cls=kmock.KubernetesScaffold)]

CONFIG_MAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "shop-config", "namespace": "demo"},
}


def refusal(status: int, reason: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=f"the server says {reason}")


def config_map_requests(server: kmock.KubernetesScaffold, method: kmock.method) -> kmock.View:
    return server[method, kmock.resource("v1/configmaps"), kmock.name("shop-config")]


@pytest.mark.parametrize(
    ("status", "reason", "raised"),
    [
        pytest.param(404, "NotFound", ObjectGone, id="namespace-gone"),
        pytest.param(409, "Conflict", ApplyConflict, id="another-manager-owns-it"),
        pytest.param(403, "Forbidden", ApplyRejected, id="forbidden"),
        pytest.param(422, "Invalid", ApplyRejected, id="invalid"),
        pytest.param(400, "BadRequest", ApplyRejected, id="admission-webhook"),
    ],
)
async def test_apply_maps_refusals(
    apiserver: kmock.KubernetesScaffold, kube: Kube, status: int, reason: str, raised: type[Exception]
) -> None:
    config_map_requests(apiserver, kmock.method.PATCH) << refusal(status, reason)
    with pytest.raises(raised, match=f"the server says {reason}"):
        await kube.apply(CONFIG_MAP, force=False)


async def test_apply_passes_other_errors_on(apiserver: kmock.KubernetesScaffold, kube: Kube) -> None:
    from kubernetes.aio.client.exceptions import ApiException

    config_map_requests(apiserver, kmock.method.PATCH) << refusal(500, "InternalError")
    with pytest.raises(ApiException) as error:
        await kube.apply(CONFIG_MAP, force=True)
    assert error.value.status == 500


async def test_apply_is_server_side_apply_with_one_field_manager(
    apiserver: kmock.KubernetesScaffold, kube: Kube
) -> None:
    config_map_requests(apiserver, kmock.method.PATCH) << CONFIG_MAP
    await kube.apply(CONFIG_MAP, force=True)
    [request] = list(config_map_requests(apiserver, kmock.method.PATCH))
    assert request.headers["Content-Type"] == "application/apply-patch+yaml; charset=utf-8"
    assert request.params == {"fieldManager": "scalable-backend-operator", "force": "true"}


async def test_create_of_an_existing_object_is_none(apiserver: kmock.KubernetesScaffold, kube: Kube) -> None:
    apiserver[kmock.method.POST, kmock.resource("v1/configmaps")] << refusal(409, "AlreadyExists")
    assert await kube.create(CONFIG_MAP) is None


async def test_create_returns_the_created_object(apiserver: kmock.KubernetesScaffold, kube: Kube) -> None:
    created = {**CONFIG_MAP, "metadata": {**CONFIG_MAP["metadata"], "uid": "uid-1"}}
    apiserver[kmock.method.POST, kmock.resource("v1/configmaps")] << created
    assert (await kube.create(CONFIG_MAP) or {})["metadata"]["uid"] == "uid-1"


async def test_get_of_a_missing_object_is_none(apiserver: kmock.KubernetesScaffold, kube: Kube) -> None:
    config_map_requests(apiserver, kmock.method.GET) << refusal(404, "NotFound")
    assert await kube.get("v1", "ConfigMap", "demo", "shop-config") is None


async def test_delete_of_a_missing_object_is_done(apiserver: kmock.KubernetesScaffold, kube: Kube) -> None:
    config_map_requests(apiserver, kmock.method.DELETE) << refusal(404, "NotFound")
    await kube.delete("v1", "ConfigMap", "demo", "shop-config")  # no error


async def test_status_patch_of_a_deleted_backend_is_object_gone(
    apiserver: kmock.KubernetesScaffold, kube: Kube
) -> None:
    apiserver[kmock.method.PATCH, kmock.resource("sbo.dev/v1alpha1/scalablebackends")] << refusal(
        404, "NotFound"
    )
    with pytest.raises(ObjectGone):
        await kube.patch_status(
            "sbo.dev/v1alpha1", "ScalableBackend", "demo", "shop", {"observedGeneration": 1}
        )


async def test_every_write_is_counted_by_verb_and_reads_are_not(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    config_map_requests(apiserver, kmock.method.PATCH) << CONFIG_MAP
    config_map_requests(apiserver, kmock.method.GET) << CONFIG_MAP
    await kube.apply(CONFIG_MAP, force=True)
    await kube.get("v1", "ConfigMap", "demo", "shop-config")

    def count(verb: str) -> float | None:
        return metrics.registry.get_sample_value("sbo_api_writes_total", {"verb": verb, "kind": "ConfigMap"})

    assert count("apply") == 1
    assert count("get") is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        pytest.param(403, "Forbidden", id="quota-or-rbac"),
        pytest.param(422, "Invalid", id="invalid"),
        pytest.param(400, "BadRequest", id="admission-webhook"),
    ],
)
async def test_every_write_maps_refusals_with_their_http_status(
    apiserver: kmock.KubernetesScaffold, kube: Kube, status: int, reason: str
) -> None:
    apiserver[kmock.method.POST, kmock.resource("v1/configmaps")] << refusal(status, reason)
    config_map_requests(apiserver, kmock.method.DELETE) << refusal(status, reason)
    config_map_requests(apiserver, kmock.method.PATCH) << refusal(status, reason)
    writes = [
        kube.create(CONFIG_MAP),
        kube.delete("v1", "ConfigMap", "demo", "shop-config"),
        kube.patch_spec(CONFIG_MAP, {"data": {"a": "b"}}),
    ]
    for write in writes:
        with pytest.raises(ApplyRejected, match=f"the server says {reason}") as error:
            await write
        assert error.value.code == status


def uid_refusal(field: str) -> kmock.KubernetesError:
    """The API server's answer to a merge patch whose metadata.uid is not the pod's (the pod was
    replaced under its name), as seen on the real node; another field: another refusal."""
    return kmock.KubernetesError(
        status=422,
        reason="Invalid",
        message=f'Pod "shop-postgres-0" is invalid: {field}: Invalid value: "uid-old": field is immutable',
        details={
            "name": "shop-postgres-0",
            "kind": "Pod",
            "causes": [{"reason": "FieldValueInvalid", "message": "field is immutable", "field": field}],
        },
    )


async def test_a_label_for_a_replaced_pod_is_not_applied_and_is_no_error(
    apiserver: kmock.KubernetesScaffold, kube: Kube
) -> None:
    pods = apiserver[kmock.method.PATCH, kmock.resource("v1/pods"), kmock.name("shop-postgres-0")]
    pods << uid_refusal("metadata.uid")
    assert not await kube.label_pod(
        "demo", "shop-postgres-0", "uid-old", {"sbo.dev/postgres-role": "replica"}
    )


async def test_a_label_refused_for_another_field_is_a_refusal(
    apiserver: kmock.KubernetesScaffold, kube: Kube
) -> None:
    pods = apiserver[kmock.method.PATCH, kmock.resource("v1/pods"), kmock.name("shop-postgres-0")]
    pods << uid_refusal("metadata.labels")
    with pytest.raises(ApplyRejected):
        await kube.label_pod("demo", "shop-postgres-0", "uid-old", {"sbo.dev/postgres-role": "replica"})
