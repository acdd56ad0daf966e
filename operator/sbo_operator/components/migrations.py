"""The migrations component: a Job per image that must succeed before the app rolls out.

With ``spec.api.migrations``, the api and worker keep the image they run until the migrations
Job for the desired image has succeeded (``Rollout``); a Job is started only once the PostgreSQL
primary is ready, since a failed Job stays failed (its name is fixed by its pod template). Old
Jobs are kept until the new one succeeded. A regenerated Secret gives a new Job too (its pods
read the new credentials); it starts once the primary runs with them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from sbo_operator.api.conditions import Reason
from sbo_operator.api.v1alpha1 import ScalableBackend
from sbo_operator.builders import Manifest, api, network_policies, postgres
from sbo_operator.builders.labels import SECRET_UIDS_ANNOTATION
from sbo_operator.builders.labels import Component as ComponentLabel
from sbo_operator.builders.names import child_names
from sbo_operator.components.base import Component, OperatorInputs, Plan, Problem, present
from sbo_operator.components.postgres import pod_ready, primary_pod
from sbo_operator.credentials import secret_uids
from sbo_operator.progress import job_state
from sbo_operator.snapshot import Snapshot

__all__ = ["Migrations", "Rollout", "app_deployment", "rollout"]


@dataclasses.dataclass(frozen=True)
class Rollout:
    """Whether the api and worker may run the desired image now, and the Job to apply."""

    released: bool
    job: Manifest | None = None
    waiting: str | None = None
    problem: Problem | None = None


def rollout(backend: ScalableBackend, snapshot: Snapshot) -> Rollout:
    uids = secret_uids(snapshot)
    job_name = api.migrations_job_name(backend, secret_uids=uids)
    if job_name is None:
        return Rollout(released=True)
    job = api.build_migrations_job(backend, secret_uids=uids)
    state = job_state(snapshot.child("Job", job_name))
    if state == "Complete":
        return Rollout(released=True, job=job)

    if state == "Absent" and backend.spec.postgres.enabled:
        # A Job started before its database would fail, and a failed Job
        # stays failed: its name is fixed by its pod template.
        primary = primary_pod(snapshot)
        # Only the Secret uids are compared, so the image (the default here) does not matter.
        if (
            primary is None
            or not pod_ready(primary)
            or not _runs_credentials(primary, postgres.build_postgres_statefulset(backend, secret_uids=uids))
        ):
            return Rollout(
                released=False,
                waiting=f"migrations Job {job_name} starts once the PostgreSQL primary is ready",
            )
    problem = None
    if state == "Failed":
        problem = Problem(
            Reason.MIGRATIONS_FAILED,
            f"Job {job_name} failed, so the new image is not rolled out; "
            f"see `kubectl logs job/{job_name}`, then fix the image or spec.api.migrations",
        )
    return Rollout(
        released=False,
        job=job,
        waiting=f"waiting for migrations Job {job_name} to succeed before rolling out",
        problem=problem,
    )


def _runs_credentials(primary: Mapping[str, Any], desired: Manifest | None) -> bool:
    """Whether the primary's pod started with the Secrets the desired instances read.

    The pod, not the StatefulSet: the template names the new Secrets as soon as it is applied,
    while the primary still runs (ready) with the old password until its pod restarts.
    """
    template = (desired or {}).get("spec", {}).get("template", {}).get("metadata", {})
    wanted = (template.get("annotations") or {}).get(SECRET_UIDS_ANNOTATION)
    return (primary["metadata"].get("annotations") or {}).get(SECRET_UIDS_ANNOTATION) == wanted


def app_deployment(
    snapshot: Snapshot, gate: Rollout, name: str, build: Callable[[str | None], Manifest | None]
) -> Plan:
    """The api's or worker's Deployment, built by ``build(image)``.

    Once migrations succeeded: the desired image (``image=None``). Until then: the image the
    Deployment runs now, or, if there is none yet, nothing (the Deployment is held).
    """
    if gate.released:
        return Plan(manifests=present(build(None)))
    current = snapshot.child("Deployment", name)
    if current is None:
        return Plan(kept=frozenset({("Deployment", name)}))
    image: str = current["spec"]["template"]["spec"]["containers"][0]["image"]
    return Plan(manifests=present(build(image)))


class Migrations(Component):
    label = ComponentLabel.MIGRATIONS

    def plan(self, backend: ScalableBackend, snapshot: Snapshot, *, operator: OperatorInputs) -> Plan:
        gate = rollout(backend, snapshot)
        kept: frozenset[tuple[str, str]] = frozenset()
        if not gate.released:
            prefix = child_names(backend).migrations_prefix
            kept = frozenset(
                (kind, name) for kind, name in snapshot.children if kind == "Job" and name.startswith(prefix)
            )
        return Plan(
            manifests=present(
                network_policies.build_app_network_policy(backend, ComponentLabel.MIGRATIONS), gate.job
            ),
            kept=kept,
            problems=[gate.problem] if gate.problem else [],
        )
