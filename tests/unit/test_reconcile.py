"""Reconciler: one pass writes what differs, the status only when it changed, and nothing in steady state.

The children come from the components themselves (tests.unit.factories); kmock plays the
apiserver and records every request, so the tests count writes as the apiserver would see them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import kmock
import pytest

from sbo_operator.autoscaler.scheduler import AutoscalerScheduler
from sbo_operator.builders.labels import SECRET_UIDS_ANNOTATION
from sbo_operator.drift import with_applied_hash
from sbo_operator.kube import Kube
from sbo_operator.metrics import OperatorMetrics
from sbo_operator.reconcile import Reconciler, error_reason
from sbo_operator.settings import OperatorSettings
from sbo_operator.snapshot import Snapshot
from sbo_operator.workqueue import Key
from tests.unit.conftest import BACKEND_ECHO, kopf_events, writes
from tests.unit.factories import (
    Body,
    Manifest,
    as_running,
    example_body,
    generated_secrets,
    merge_patch,
    parse,
    snapshot,
    wanted_once_running,
)

pytestmark = [pytest.mark.unit, pytest.mark.kmock(cls=kmock.KubernetesScaffold)]

KEY = Key("demo", "shop")
BACKENDS = kmock.resource("sbo.dev/v1alpha1/scalablebackends")
STATUS_PATH = "/apis/sbo.dev/v1alpha1/namespaces/demo/scalablebackends/shop/status"


def applied_stack(body: Body) -> list[Manifest]:
    """Every child as the operator applied it (with its applied-hash) and running."""
    backend = parse(body)
    return [
        *generated_secrets(backend),
        *(as_running(with_applied_hash(m)) for m in wanted_once_running(backend)),
    ]


class Cluster:
    """What the watches saw: one backend and its children, changed by the tests."""

    def __init__(self, body: Body, children: list[Manifest]) -> None:
        self.body = body
        self.children = children

    def snapshot(self, key: Key) -> Snapshot | None:
        return snapshot(self.body, *self.children) if key == KEY else None


def reconciler_for(
    kube: Kube, metrics: OperatorMetrics, cluster: Cluster, *, settings: OperatorSettings | None = None
) -> Reconciler:
    settings = settings or OperatorSettings()
    autoscaler = AutoscalerScheduler(
        kube=kube, settings=settings, metrics=metrics, on_report=lambda key: None
    )
    return Reconciler(
        kube=kube,
        metrics=metrics,
        autoscaler=autoscaler,
        snapshots=cluster.snapshot,
        images=settings.data_service_images,
    )


def written_status(server: kmock.KubernetesScaffold) -> dict[str, Any]:
    [request] = [r for r in server if r.method.value == "PATCH" and r.url.path == STATUS_PATH]
    status: dict[str, Any] = json.loads(request.text)["status"]
    return status


async def test_a_running_stack_gets_its_status_written_once_then_nothing(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    body = example_body()
    cluster = Cluster(body, applied_stack(body))
    reconciler = reconciler_for(kube, metrics, cluster)

    await reconciler.reconcile(KEY)
    assert writes(apiserver) == [("PATCH", STATUS_PATH)], (
        "the children are as desired: only the status is new"
    )
    status = written_status(apiserver)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")

    # The watch brings the written status back: the steady state sends nothing.
    cluster.body = {**body, "status": merge_patch({}, status)}
    await reconciler.reconcile(KEY)
    await reconciler.reconcile(KEY)
    assert writes(apiserver) == [("PATCH", STATUS_PATH)]
    assert metrics.registry.get_sample_value("sbo_reconciles_total", {"result": "ok"}) == 3


async def test_a_status_already_written_is_not_written_again_before_the_watch_brings_it_back(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    body = {**example_body(), "metadata": {**example_body()["metadata"], "resourceVersion": "7"}}
    cluster = Cluster(body, applied_stack(body))
    reconciler = reconciler_for(kube, metrics, cluster)

    await reconciler.reconcile(KEY)
    # Another event (a child's) comes before the watch brought our status back: same body.
    await reconciler.reconcile(KEY)
    assert writes(apiserver) == [("PATCH", STATUS_PATH)]

    # A newer body is the truth again, even one whose status someone else changed.
    cluster.body = {**body, "metadata": {**body["metadata"], "resourceVersion": "9"}, "status": {}}
    await reconciler.reconcile(KEY)
    assert writes(apiserver) == [("PATCH", STATUS_PATH)] * 2


async def test_the_status_is_written_again_when_it_changes(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    body = example_body()
    children = applied_stack(body)
    cluster = Cluster(body, children)
    reconciler = reconciler_for(kube, metrics, cluster)
    await reconciler.reconcile(KEY)
    cluster.body = {**body, "status": merge_patch({}, written_status(apiserver))}

    redis = next(c for c in children if (c["kind"], c["metadata"]["name"]) == ("StatefulSet", "shop-redis"))
    unready = copy.deepcopy(redis)
    unready["status"]["readyReplicas"] = 0
    cluster.children = [unready if c is redis else c for c in children]
    await reconciler.reconcile(KEY)

    assert writes(apiserver) == [("PATCH", STATUS_PATH)] * 2
    patches = [json.loads(r.text)["status"] for r in apiserver if r.url.path == STATUS_PATH]
    redis_ready = next(c for c in patches[1]["conditions"] if c["type"] == "RedisReady")
    assert (redis_ready["status"], redis_ready["reason"]) == ("False", "PodsNotReady")


async def test_an_invalid_spec_stalls_and_changes_only_the_conditions(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    body = example_body()
    body["spec"]["api"]["replicas"] = -1  # the CRD refuses it too; a stale object may still carry it
    reconciler = reconciler_for(kube, metrics, Cluster(body, []))
    await reconciler.reconcile(KEY)

    assert writes(apiserver) == [("PATCH", STATUS_PATH)], (
        "no child is applied for a spec the operator cannot use"
    )
    status = written_status(apiserver)
    assert set(status) == {"observedGeneration", "conditions"}, "what was observed before stays as it was"
    summary = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert summary == {
        "Ready": ("False", "InvalidSpec"),
        "Reconciling": ("False", "InvalidSpec"),
        "Stalled": ("True", "InvalidSpec"),
    }
    assert "spec.api.replicas" in status["conditions"][2]["message"]


async def test_a_failed_reconcile_is_counted_by_reason(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.POST] << (lambda request: request.data)  # the generated Secrets
    apiserver[kmock.method.PATCH] << kmock.KubernetesError(status=500, reason="InternalError", message="etcd")
    body = example_body()
    reconciler = reconciler_for(kube, metrics, Cluster(body, []))

    with pytest.raises(Exception, match="Internal"):
        await reconciler.reconcile(KEY)
    assert (
        metrics.registry.get_sample_value("sbo_reconcile_errors_total", {"reason": "ApiInternalError"}) == 1
    )
    assert metrics.registry.get_sample_value("sbo_reconciles_total", {"result": "error"}) == 1


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(TimeoutError(), "TimeoutError", id="not-an-api-error"),
        pytest.param(ValueError("x"), "ValueError", id="a-bug"),
    ],
)
def test_error_reasons_are_the_exception_class_outside_the_api(error: Exception, reason: str) -> None:
    assert error_reason(error) == reason


async def test_moving_the_data_services_to_a_mirror_rolls_exactly_their_statefulsets(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH] << BACKEND_ECHO
    body = example_body("full.yaml")
    settings = OperatorSettings.model_validate(
        {
            "SBO_POSTGRES_IMAGE": "mirror.example/library/postgres:{version}",
            "SBO_REDIS_IMAGE": "mirror.example/library/redis:{version}",
        }
    )
    reconciler = reconciler_for(kube, metrics, Cluster(body, applied_stack(body)), settings=settings)
    with kopf_events() as events:
        await reconciler.reconcile(KEY)
    assert events.get_nowait().reason == "Applied"

    applied = {
        request.url.path.rsplit("/", 1)[-1]: json.loads(request.text)
        for request in apiserver
        if request.method.value == "PATCH" and request.url.path != STATUS_PATH
    }
    assert sorted(applied) == ["shop-postgres", "shop-redis"]
    for name, image in [
        ("shop-postgres", "mirror.example/library/postgres:16"),
        ("shop-redis", "mirror.example/library/redis:7.2"),
    ]:
        pod = applied[name]["spec"]["template"]["spec"]
        assert {c["image"] for c in [*pod.get("initContainers", []), *pod["containers"]]} == {image}


async def test_a_backend_gone_from_the_watches_is_not_reconciled(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    reconciler = reconciler_for(kube, metrics, Cluster(example_body(), []))
    assert await reconciler.reconcile(Key("demo", "other")) is None
    assert writes(apiserver) == []


async def test_a_secret_deleted_by_hand_is_created_again_and_rolls_every_pod_that_reads_it(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    body = example_body()
    secret = "shop-redis"
    children = [c for c in applied_stack(body) if (c["kind"], c["metadata"]["name"]) != ("Secret", secret)]
    apiserver[kmock.method.POST, kmock.resource("v1/secrets")] << {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret, "namespace": "demo", "uid": "uid-regenerated"},
        "data": {"password": "bmV3"},
    }
    apiserver[kmock.method.PATCH] << BACKEND_ECHO
    reconciler = reconciler_for(kube, metrics, Cluster(body, children))
    with kopf_events() as events:
        await reconciler.reconcile(KEY)

    secrets_path = "/api/v1/namespaces/demo/secrets"
    applied = [path for method, path in writes(apiserver) if method == "PATCH" and path != STATUS_PATH]
    assert writes(apiserver)[0] == ("POST", secrets_path), "the Secret first, before the pods that read it"
    # In the same pass: Redis and every pod reading the Secret, with its new uid; nothing else.
    # The migrations Job reads it too: a new Job (its name follows its pod template).
    kinds_and_names = sorted("/".join(path.split("/")[-2:]) for path in applied)
    assert [entry.partition("-migrations-")[0] for entry in kinds_and_names] == [
        "deployments/shop-api",
        "jobs/shop",
        "statefulsets/shop-redis",
    ]
    for request in apiserver:
        if request.method.value == "PATCH" and request.url.path in applied:
            template = json.loads(request.text)["spec"]["template"]
            assert f"{secret}=uid-regenerated" in template["metadata"]["annotations"][SECRET_UIDS_ANNOTATION]

    posted = []
    while not events.empty():
        posted.append(events.get_nowait())
    [warning] = [e for e in posted if e.type == "Warning"]
    assert warning.reason == "SecretRegenerated"
    assert f"Secret {secret} was missing" in warning.message
    assert "StatefulSet shop-redis" in warning.message
    assert "bmV3" not in warning.message, "never a value"


async def test_a_rollout_held_for_a_missing_secret_is_retried_later_and_later(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    running = example_body()
    body = copy.deepcopy(running)
    body["spec"]["api"]["env"] = [
        {"name": "PAYMENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": "payments", "key": "token"}}}
    ]
    cluster = Cluster(body, applied_stack(running))
    reconciler = reconciler_for(kube, metrics, cluster)

    # The Secret's appearance is no event the operator watches: it looks again, less and less often.
    with kopf_events() as events:
        delays = [await reconciler.reconcile(KEY)]
        cluster.body = {**body, "status": merge_patch({}, written_status(apiserver))}  # the watch's echo
        delays += [await reconciler.reconcile(KEY), await reconciler.reconcile(KEY)]
    assert delays == [2.0, 4.0, 8.0]
    assert events.qsize() == 1, "one Warning when the problem appeared"
    assert writes(apiserver) == [("PATCH", STATUS_PATH)], (
        "neither the api Deployment nor a migrations Job with the unstartable template is applied"
    )
    stalled = next(c for c in written_status(apiserver)["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "SecretNotFound")


QUOTA_MESSAGE = (
    'secrets "{name}" is forbidden: exceeded quota: no-secrets, requested: secrets=1, '
    "used: secrets=0, limited: secrets=0"
)


async def test_a_refused_secret_is_a_stalled_condition_not_a_crash_loop(
    apiserver: kmock.KubernetesScaffold,
    kube: Kube,
    metrics: OperatorMetrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    apiserver[kmock.method.PATCH] << (lambda request: request.data)  # server-side apply of the rest
    apiserver[kmock.method.POST, kmock.resource("v1/secrets")] << (
        lambda request: kmock.KubernetesError(
            status=403,
            reason="Forbidden",
            message=QUOTA_MESSAGE.format(name=request.data["metadata"]["name"]),
        )
    )
    body = example_body()
    cluster = Cluster(body, [])
    reconciler = reconciler_for(kube, metrics, cluster)

    with kopf_events():
        delays = [await reconciler.reconcile(KEY)]
        cluster.body = {**body, "status": merge_patch({}, written_status(apiserver))}  # the watch's echo
        delays += [await reconciler.reconcile(KEY), await reconciler.reconcile(KEY)]

    assert delays == [2.0, 4.0, 8.0], "retried after a growing delay, not in a tight loop"
    stalled = next(c for c in written_status(apiserver)["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "QuotaExceeded")
    assert "Secret shop-app-secrets" in stalled["message"]
    assert "ResourceQuota demo/no-secrets" in stalled["message"]
    # The rest converges as far as it can: config and Services are applied; no workload
    # whose pods need a refused Secret is.
    applied = {request.url.path.rsplit("/", 2)[-2] for request in apiserver[kmock.method.PATCH]}
    assert {"configmaps", "services"} <= applied
    assert not {"deployments", "statefulsets", "jobs"} & applied
    assert not [record for record in caplog.records if record.exc_info], "no traceback for a refusal"
    assert metrics.registry.get_sample_value("sbo_reconciles_total", {"result": "ok"}) == 3


async def test_a_name_someone_else_holds_is_read_at_each_look_not_applied_again(
    apiserver: kmock.KubernetesScaffold, kube: Kube, metrics: OperatorMetrics
) -> None:
    """The stranger's deletion is no event the operator watches: each look reads the name, where
    another apply would be refused with a conflict, a write on every pass of a steady state."""
    apiserver[kmock.method.PATCH, BACKENDS] << BACKEND_ECHO
    name = "shop-redis-config"
    stranger = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "demo"}}
    conflict = kmock.KubernetesError(status=409, reason="Conflict", message="conflict with kubectl")
    not_found = kmock.KubernetesError(status=404, reason="NotFound", message="not found")
    taken = {"by_a_stranger": True}
    config_map = (kmock.resource("v1/configmaps"), kmock.name(name))
    apiserver[kmock.method.PATCH, *config_map] << (
        lambda request: conflict if taken["by_a_stranger"] else request.data
    )
    apiserver[kmock.method.GET, *config_map] << (
        lambda request: stranger if taken["by_a_stranger"] else not_found
    )
    body = example_body()
    cluster = Cluster(body, [c for c in applied_stack(body) if c["metadata"]["name"] != name])
    reconciler = reconciler_for(kube, metrics, cluster)
    config_map_path = f"/api/v1/namespaces/demo/configmaps/{name}"

    with kopf_events():
        await reconciler.reconcile(KEY)
        cluster.body = {**body, "status": merge_patch({}, written_status(apiserver))}  # the watch's echo
        await reconciler.reconcile(KEY)
        await reconciler.reconcile(KEY)
        assert writes(apiserver) == [("PATCH", config_map_path), ("PATCH", STATUS_PATH)], (
            "one refused apply, then only reads"
        )
        stalled = next(c for c in written_status(apiserver)["conditions"] if c["type"] == "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "ChildOwnedElsewhere")
        assert f"ConfigMap demo/{name}" in stalled["message"]

        # The stranger is deleted: the next look applies the ConfigMap and the backend converges.
        taken["by_a_stranger"] = False
        await reconciler.reconcile(KEY)
    assert writes(apiserver)[2:] == [("PATCH", config_map_path), ("PATCH", STATUS_PATH)]
    last = json.loads([r for r in apiserver if r.url.path == STATUS_PATH][-1].text)["status"]
    assert next(c for c in last["conditions"] if c["type"] == "Stalled")["status"] == "False"
