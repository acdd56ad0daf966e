"""The election's inputs as the operator builds them, shared by the unit and integration tests of
synchronous replication (tests/{unit,integration}/test_postgres_synchronous.py): a primary's pod
as its probe answered, and a policy that asks for synchronous standbys and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sbo_operator.postgres_monitor import instances_of
from sbo_operator.postgres_probe import InstanceProbe
from sbo_operator.postgres_roles import Instance, Policy
from tests.unit.factories import example_body, parse, postgres_pod, snapshot


def probed_primary(name: str, answer: InstanceProbe) -> Instance:
    """A ready pod of shop labelled primary whose server gave ``answer`` to the operator's probe,
    as the operator's own ``instances_of`` makes it the election's observation."""
    body = example_body()
    pod = postgres_pod(name, role="primary")
    [observed] = instances_of(parse(body), snapshot(body, pods=[pod]), [], {name: answer}, _never_down)
    return observed


def _never_down(name: str, down: bool) -> None:
    return None


def synchronous_policy(
    instances: Sequence[str],
    names: Sequence[str],
    *,
    standbys: int,
    required: bool,
    last_primary_lsn: int | None = None,
) -> Policy:
    """``standbys`` synchronous standbys among ``names`` (the ConfigMap's list); failover at once,
    with no bound on the lag and no switchover."""
    return Policy(
        instances=tuple(instances),
        failover_delay=timedelta(0),
        max_failover_lag_bytes=None,
        switchover=None,
        last_primary_lsn=last_primary_lsn,
        synchronous_standbys=standbys,
        synchronous_required=required,
        synchronous_names=tuple(names),
    )
