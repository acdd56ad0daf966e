"""Status, computed purely from a snapshot of the children, built through the status model.

Conditions follow kstatus: `Ready` says the object is current; `Reconciling`
and `Stalled` are "abnormal-true" conditions, True only while work is in
flight or blocked. Each component has its own condition (``Component.status``),
and every condition carries a CamelCase reason and a message a person can act on.

The status is written as a merge patch: what a component no longer owns is
sent as null, so that the apiserver deletes it (``status_patch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Any

from pydantic import BaseModel, ValidationError

from sbo_operator.api.autoscaling import AutoscalingStatus
from sbo_operator.api.conditions import ConditionState, ConditionStatus, ConditionType, Reason
from sbo_operator.api.v1alpha1 import (
    BackendAutoscalingStatus,
    Condition,
    Endpoints,
    ScalableBackend,
    ScalableBackendStatus,
    SecretNames,
)
from sbo_operator.autoscaler.conditions import autoscaling_conditions
from sbo_operator.autoscaler.decide import Decision
from sbo_operator.components import COMPONENTS, autoscaling_targets
from sbo_operator.components.base import Problem, StatusFragment
from sbo_operator.snapshot import Snapshot

__all__ = [
    "compute_status",
    "invalid_spec_problem",
    "invalid_spec_status",
    "is_stored",
    "settle_conditions",
    "status_patch",
    "without_none",
]


def compute_status(
    backend: ScalableBackend,
    snapshot: Snapshot,
    *,
    applied: Sequence[str],
    waiting: Mapping[str, str],
    problems: Sequence[Problem],
    held: Mapping[str, Problem] | None = None,
    autoscaling: Mapping[str, Decision] | None = None,
    previous: Sequence[Mapping[str, Any]] = (),
    now: str,
) -> ScalableBackendStatus:
    """The whole status, from the children as last seen and what this reconcile did.

    `applied` lists children written in this pass: their new state is not
    observed yet, so the backend is Reconciling rather than Ready. `held` are the components
    whose rollout waits for a missing reference (their condition says which). `previous`
    are the stored conditions, whose lastTransitionTime is kept while their status holds.
    """
    components: list[ConditionState] = []
    informational: set[ConditionType] = set()
    fields: dict[str, BaseModel | None] = {}
    endpoints: dict[str, str | None] = {}
    secrets: dict[str, str | None] = {}
    for component in COMPONENTS:
        fragment = component.status(backend, snapshot, waiting.get(component.name))
        if fragment is None:
            continue
        problem = (held or {}).get(component.name)
        components.append(fragment.condition if problem is None else _held_condition(fragment, problem))
        if not fragment.gates_ready:
            informational.add(fragment.condition.type)
        fields.update(fragment.fields)
        endpoints.update(fragment.endpoints)
        secrets.update(fragment.secrets)

    report, autoscaler_conditions = _autoscaling(backend, autoscaling or {})
    conditions = [
        *_summarise(components, applied=applied, problems=problems, informational=informational),
        *autoscaler_conditions,
    ]
    generation = backend.metadata.generation
    return ScalableBackendStatus(
        observed_generation=generation,
        conditions=_conditions(settle_conditions(previous, conditions, now=now, generation=generation)),
        endpoints=Endpoints(**endpoints),
        secrets=SecretNames(**secrets),
        autoscaling=report,
        **fields,
    )


def _held_condition(fragment: StatusFragment, problem: Problem) -> ConditionState:
    """A component whose new pods could not start: it keeps what runs, and says why it waits."""
    return ConditionState(
        fragment.condition.type,
        ConditionStatus.FALSE,
        problem.reason,
        f"rollout held back, the running version is kept: {problem.message}",
    )


def invalid_spec_problem(error: ValidationError) -> Problem:
    """A spec the schema let through but the operator cannot use, naming every field."""
    fields = "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
        if e["loc"][:1] == ("spec",)
        else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in error.errors()
    )
    return Problem(Reason.INVALID_SPEC, fields)


def invalid_spec_status(
    problem: Problem, *, generation: int | None, previous: Sequence[Mapping[str, Any]], now: str
) -> ScalableBackendStatus:
    """Stalled, never a crash loop. Only the conditions change: what was observed before stays."""
    conditions = [
        ConditionState(ConditionType.READY, ConditionStatus.FALSE, problem.reason, problem.message),
        ConditionState(ConditionType.RECONCILING, ConditionStatus.FALSE, problem.reason, "fix the spec"),
        ConditionState(ConditionType.STALLED, ConditionStatus.TRUE, problem.reason, problem.message),
    ]
    return ScalableBackendStatus(
        observed_generation=generation,
        conditions=_conditions(settle_conditions(previous, conditions, now=now, generation=generation)),
    )


def _autoscaling(
    backend: ScalableBackend, decisions: Mapping[str, Decision]
) -> tuple[BackendAutoscalingStatus | None, list[ConditionState]]:
    """status.autoscaling.<component> and the autoscaler's conditions, in registry order.

    The autoscaler's memory (its history) stays in the operator, so the
    status changes only when a decision does.
    """
    if not decisions:
        return None, []
    reports: dict[str, AutoscalingStatus | None] = {}
    conditions: list[ConditionState] = []
    for component in autoscaling_targets(backend):
        decision = decisions.get(component)
        reports[component] = None if decision is None else decision.to_status()
        if decision is not None:
            conditions.extend(
                ConditionState(c.type.of_component(component), c.status, c.reason, c.message)
                for c in autoscaling_conditions(decision)
            )
    return BackendAutoscalingStatus.model_validate(reports), conditions


def _summarise(
    components: list[ConditionState],
    *,
    applied: Sequence[str],
    problems: Sequence[Problem],
    informational: Set[ConditionType] = frozenset(),
) -> list[ConditionState]:
    """Ready, Reconciling and Stalled, followed by one condition per component.

    ``informational`` conditions are reported but do not hold Ready back."""
    not_ready = [c for c in components if c.status != ConditionStatus.TRUE and c.type not in informational]
    if problems:
        first = problems[0]
        stalled = ConditionState(ConditionType.STALLED, ConditionStatus.TRUE, first.reason, first.message)
        reconciling = ConditionState(
            ConditionType.RECONCILING,
            ConditionStatus.FALSE,
            first.reason,
            "blocked until the problem is fixed",
        )
        ready = ConditionState(ConditionType.READY, ConditionStatus.FALSE, first.reason, first.message)
    else:
        stalled = ConditionState(
            ConditionType.STALLED, ConditionStatus.FALSE, Reason.NO_PROBLEMS, "nothing blocks progress"
        )
        if applied:
            message = f"applied {len(applied)} change(s): {', '.join(applied[:5])}" + (
                "..." if len(applied) > 5 else ""
            )
            reconciling = ConditionState(
                ConditionType.RECONCILING, ConditionStatus.TRUE, Reason.APPLYING, message
            )
            ready = ConditionState(ConditionType.READY, ConditionStatus.FALSE, Reason.APPLYING, message)
        elif not_ready:
            first_waiting = not_ready[0]
            message = "; ".join(c.message for c in not_ready)
            reconciling = ConditionState(
                ConditionType.RECONCILING, ConditionStatus.TRUE, first_waiting.reason, message
            )
            ready = ConditionState(ConditionType.READY, ConditionStatus.FALSE, first_waiting.reason, message)
        else:
            reconciling = ConditionState(
                ConditionType.RECONCILING,
                ConditionStatus.FALSE,
                Reason.RECONCILED,
                "every component is up to date",
            )
            ready = ConditionState(
                ConditionType.READY, ConditionStatus.TRUE, Reason.READY, "every component is ready"
            )
    return [ready, reconciling, stalled, *components]


def settle_conditions(
    previous: Sequence[Mapping[str, Any]],
    current: Sequence[ConditionState],
    *,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions as stored: lastTransitionTime moves only when the status flips."""
    before = {c.get("type"): c for c in previous}
    settled = []
    for condition in current:
        old = before.get(condition.type)
        unchanged = old is not None and old.get("status") == condition.status
        entry: dict[str, Any] = {
            "type": str(condition.type),
            "status": str(condition.status),
            "reason": str(condition.reason),
            "message": condition.message,
            "lastTransitionTime": old.get("lastTransitionTime", now) if old and unchanged else now,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        settled.append(entry)
    return settled


def _conditions(settled: Sequence[Mapping[str, Any]]) -> list[Condition]:
    return [Condition.model_validate(condition) for condition in settled]


def status_patch(status: ScalableBackendStatus) -> dict[str, Any]:
    """The status as a merge patch: every field that was set, None as null.

    A merge patch deletes keys set to null, so what a component no longer owns
    is removed; fields never set (e.g. all but the conditions of an invalid
    spec) are left as stored. Lists are replaced whole, so their items carry no nulls.
    """
    patch: dict[str, Any] = _nulls_outside_lists(
        status.model_dump(mode="json", by_alias=True, exclude_unset=True)
    )
    return patch


def _nulls_outside_lists(value: Any, *, in_list: bool = False) -> Any:
    if isinstance(value, dict):
        return {
            k: _nulls_outside_lists(v, in_list=in_list)
            for k, v in value.items()
            if not (in_list and v is None)
        }
    if isinstance(value, list):
        return [_nulls_outside_lists(v, in_list=True) for v in value]
    return value


def without_none(value: Any) -> Any:
    """Merge patches delete keys set to None; compare as if they were already gone."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


def is_stored(patch: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether applying the patch would leave the stored status as it is."""
    unchanged: bool = without_none(patch) == {k: v for k, v in stored.items() if k in patch}
    return unchanged
