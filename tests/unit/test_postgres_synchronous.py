"""The primary's synchronous_standby_names as postgres_roles decides it (spec.postgres.synchronous).

Table-driven: what the primary reports (its setting, the standbys streaming from it) and the spec in,
the SetSynchronousStandbyNames action (or none) out. Properties (hypothesis): with ``required:
false`` a commit never waits for more standbys than stream; with ``required: true`` always for
``standbys``; a primary already at the wanted value gets no action (a steady state sends nothing).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sbo_operator.builders.postgres_config import synchronous_standby_names
from sbo_operator.postgres_probe import InstanceProbe
from sbo_operator.postgres_roles import (
    Instance,
    Phase,
    Policy,
    RolesState,
    SetRole,
    SetSynchronousStandbyNames,
    decide,
    streaming_standbys,
    synchronous_count,
    synchronous_setting,
    synchronous_wait,
)
from tests.unit.election import probed_primary, synchronous_policy
from tests.unit.test_postgres_roles import pod

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NAMES = tuple(f"shop-postgres-{ordinal}" for ordinal in range(6))  # every instance there can be
P0, P1, P2 = NAMES[:3]
STABLE = RolesState(phase=Phase.STABLE, current_primary=P0, timeline=1)


def any_of(count: int) -> str:
    return synchronous_standby_names(NAMES, count)


def instance(name: str, **fields: Any) -> Instance:
    """A ready, reachable standby streaming on timeline 1 (the election's tests' instance)."""
    return pod(name, **fields)


def primary(setting: str | None, streaming: tuple[str, ...] | None, **fields: Any) -> Instance:
    """P0 serving on timeline 1 at LSN 1000, reporting ``setting`` and the standbys ``streaming``."""
    answer = InstanceProbe(
        reachable=True,
        in_recovery=False,
        timeline=1,
        lsn=1000,
        replay_lsn=1000,
        synchronous_standby_names=setting,
        streaming_standbys=streaming,
    )
    return dataclasses.replace(probed_primary(P0, answer), **fields)


def policy(standbys: int, required: bool) -> Policy:
    return synchronous_policy(
        (P0, P1, P2), NAMES, standbys=standbys, required=required, last_primary_lsn=1000
    )


def setting(primary_instance: Instance, wanted: Policy, state: RolesState = STABLE) -> str | None:
    """The value the decision sets on the primary; None: no action."""
    found = synchronous_setting([primary_instance, instance(P1), instance(P2)], state, wanted)
    assert found is None or found.instance == P0
    return None if found is None else found.value


@pytest.mark.parametrize(
    ("standbys", "required", "reported", "streaming", "expected"),
    [
        # required: writes wait for n whatever streams; the ConfigMap's value needs nothing.
        pytest.param(1, True, any_of(1), (P1, P2), None, id="required-all-streaming-steady"),
        pytest.param(1, True, any_of(1), (), None, id="required-none-streaming-still-waits"),
        pytest.param(2, True, any_of(2), (P1,), None, id="required-one-of-two-still-waits-for-two"),
        pytest.param(1, True, "", (), any_of(1), id="required-a-stale-empty-value-is-raised"),
        pytest.param(2, True, any_of(1), (P1, P2), any_of(2), id="required-a-stale-lower-value-is-raised"),
        # not required: no more than stream.
        pytest.param(1, False, any_of(1), (P1,), None, id="optional-enough-streaming-steady"),
        pytest.param(1, False, any_of(1), (), "", id="optional-none-streaming-is-asynchronous"),
        pytest.param(2, False, any_of(2), (P2,), any_of(1), id="optional-lowered-to-the-one-streaming"),
        pytest.param(2, False, any_of(1), (P1, P2), any_of(2), id="optional-raised-when-they-return"),
        pytest.param(2, False, "", (P1,), any_of(1), id="optional-raised-from-asynchronous"),
        pytest.param(1, False, "", (), None, id="optional-asynchronous-steady"),
        pytest.param(2, False, any_of(2), (P1, P2, P1), None, id="optional-a-name-twice-counts-once"),
        # Who counts as streaming: the instances' names only, never the primary itself.
        pytest.param(1, False, any_of(1), ("pg_basebackup",), "", id="optional-a-base-backup-is-no-standby"),
        pytest.param(1, False, any_of(1), (P0,), "", id="optional-the-primary-is-no-standby"),
        pytest.param(
            1, False, any_of(1), ("shop-postgres-replica-0",), "", id="optional-a-legacy-pod-is-no-standby"
        ),
        # Asynchronous by the spec: a value left in postgresql.auto.conf is cleared.
        pytest.param(0, True, "", (P1,), None, id="asynchronous-steady"),
        pytest.param(0, True, any_of(1), (P1,), "", id="asynchronous-a-stale-value-is-cleared"),
        pytest.param(0, False, any_of(2), (), "", id="asynchronous-optional-a-stale-value-is-cleared"),
    ],
)
def test_the_value_the_primary_gets(
    standbys: int, required: bool, reported: str, streaming: tuple[str, ...], expected: str | None
) -> None:
    assert setting(primary(reported, streaming), policy(standbys, required)) == expected


@pytest.mark.parametrize(
    ("primary_instance", "state"),
    [
        pytest.param(primary(any_of(1), None), STABLE, id="no-streaming-list-probed"),
        pytest.param(primary(None, ()), STABLE, id="no-setting-probed"),
        pytest.param(primary(any_of(1), (), reachable=False), STABLE, id="primary-unreachable"),
        pytest.param(primary(any_of(1), (), in_recovery=True), STABLE, id="primary-still-in-recovery"),
        pytest.param(primary(any_of(1), (), legacy=True), STABLE, id="old-shape-primary-left-alone"),
        pytest.param(
            primary(any_of(1), ()),
            dataclasses.replace(STABLE, phase=Phase.FAILING_OVER, target_primary=P1),
            id="during-a-failover",
        ),
        pytest.param(
            primary(any_of(1), ()),
            dataclasses.replace(STABLE, phase=Phase.SWITCHING_OVER, target_primary=P1),
            id="during-a-switchover",
        ),
        pytest.param(primary(any_of(1), ()), RolesState(), id="before-bootstrap"),
    ],
)
def test_nothing_is_set_without_a_writable_primary_probed_in_a_stable_state(
    primary_instance: Instance, state: RolesState
) -> None:
    assert setting(primary_instance, policy(1, False), state) is None


def test_decide_lowers_the_standbys_before_its_other_actions() -> None:
    observed = [primary(any_of(1), ()), instance(P1, role_label=None), instance(P2)]
    decision = decide(observed, STABLE, policy(1, False), NOW)
    assert decision.state == STABLE
    assert decision.actions == (SetSynchronousStandbyNames(P0, ""), SetRole(P1, "replica"))


def test_decide_sets_a_promoted_primary_whose_copied_auto_conf_disagrees() -> None:
    """A standby cloned while the value was lowered carries it in postgresql.auto.conf: once it is
    the primary, the first stable pass raises it to what the spec asks."""
    promoted = dataclasses.replace(primary("", (P0, P2)), name=P1)
    old = instance(P0)  # the old primary, back as a standby
    state = dataclasses.replace(STABLE, current_primary=P1)
    decision = decide([old, promoted, instance(P2)], state, policy(1, True), NOW)
    assert SetSynchronousStandbyNames(P1, any_of(1)) in decision.actions


@pytest.mark.parametrize("required", [True, False])
def test_the_pass_that_ends_a_failover_sets_the_value_before_it_labels_the_new_primary(
    required: bool,
) -> None:
    """The copied value is corrected before -rw sends writes to the promoted instance: with
    ``required`` it waits for a standby again; without, it is asynchronous until they stream."""
    promoted = dataclasses.replace(primary("", ()), name=P1, role_label="replica", timeline=2)
    gone = instance(P0, exists=False, pod_uid=None, ready=False, unready_since=NOW, reachable=False)
    changing = RolesState(
        phase=Phase.FAILING_OVER, current_primary=P0, target_primary=P1, timeline=1, since=NOW
    )
    decision = decide([gone, promoted, instance(P2, streaming=False)], changing, policy(1, required), NOW)
    assert (decision.state.phase, decision.state.current_primary) == (Phase.STABLE, P1)
    labelled = decision.actions.index(SetRole(P1, "primary"))
    if required:
        assert decision.actions[0] == SetSynchronousStandbyNames(P1, any_of(1))
        assert labelled > 0
    else:
        assert not any(isinstance(action, SetSynchronousStandbyNames) for action in decision.actions)


def test_decide_promotes_without_touching_the_setting() -> None:
    target = instance(P1)
    state = RolesState(phase=Phase.FAILING_OVER, current_primary=P0, target_primary=P1, timeline=1, since=NOW)
    gone = instance(P0, exists=False, pod_uid=None, ready=False, unready_since=NOW, reachable=False)
    decision = decide([gone, target, instance(P2)], state, policy(1, False), NOW)
    assert not any(isinstance(action, SetSynchronousStandbyNames) for action in decision.actions)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", 0),
        ("  ", 0),
        (any_of(1), 1),
        (any_of(3), 3),
        (None, None),
        ("FIRST 1 (a, b)", None),
        ("*", None),
    ],
)
def test_the_standbys_a_value_waits_for(value: str | None, expected: int | None) -> None:
    assert synchronous_count(value) == expected


# ---- properties --------------------------------------------------------------------------------------


@given(
    standbys=st.integers(0, 5),
    required=st.booleans(),
    streaming=st.lists(st.sampled_from([*NAMES, "pg_basebackup", "other"]), max_size=8),
    reported=st.one_of(st.just(""), st.integers(1, 5).map(any_of), st.text(max_size=20)),
)
def test_never_more_than_stream_when_not_required_and_always_n_when_required(
    standbys: int, required: bool, streaming: list[str], reported: str
) -> None:
    wanted = policy(standbys, required)
    observed = primary(reported, tuple(streaming))
    value = setting(observed, wanted)
    in_effect = reported if value is None else value  # what the primary waits for after the action
    count = synchronous_count(in_effect)
    streaming_count = streaming_standbys(P0, tuple(streaming), NAMES)
    assert streaming_count is not None
    assert count == synchronous_wait(standbys, required, streaming_count)
    if required:
        assert count == standbys
    else:
        assert count <= streaming_count
        assert count == min(standbys, streaming_count)
    # Applied, it is steady: the next pass sends nothing.
    assert setting(dataclasses.replace(observed, synchronous_standby_names=in_effect), wanted) is None
