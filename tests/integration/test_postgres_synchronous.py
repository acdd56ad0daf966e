"""synchronous.required on real servers (loopback): the operator's own probe, decision and setter.

A primary and one standby started from the emitted scripts, one synchronous standby asked for
(test_postgres_failover_scripts' harness). An operator pass here is what the reconciler does for
it: ``probe_instance`` as ``sbo_operator``, the pure ``synchronous_setting``, and
``set_synchronous_standby_names`` when the primary's value differs. The standby's server is then
SIGKILLed: with ``required: false`` a commit returns at once after the pass (the primary became
asynchronous), and the standby's return brings ``ANY 1`` back; with ``required: true`` the pass
changes nothing and a commit waits until the client cancels it (statement_timeout cannot show
it: PostgreSQL disarms it before the commit, and so before the wait for the standbys).
"""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest

from devkit.process import wait_until
from sbo_operator.builders.postgres_config import OPERATOR_USER, synchronous_standby_names
from sbo_operator.postgres_probe import Credentials, probe_instance, set_synchronous_standby_names
from sbo_operator.postgres_roles import Phase, RolesState, synchronous_setting
from tests.integration.test_data_services_config import LOOPBACK, Sandbox
from tests.integration.test_postgres_failover_scripts import (
    Forwarder,
    forwarder,  # noqa: F401 - the fixture, shared
    sandbox,  # noqa: F401 - the fixture, shared
    start_cluster,
    streaming_standbys,
)
from tests.integration.test_postgres_failover_scripts import Instance as Server
from tests.unit.election import probed_primary, synchronous_policy

pytestmark = pytest.mark.integration

NAMES = ("shop-postgres-0", "shop-postgres-1")
ANY_1 = synchronous_standby_names(NAMES, 1)
# How long a commit may wait before the client cancels it: then it is committed locally and returns
# with a WARNING that names the wait for synchronous replication, which the test looks for.
COMMIT_TIMEOUT_SECONDS = 2.0


def operator_pass(primary: Server, *, required: bool) -> str | None:
    """One pass for the primary: probe it, decide, set; the value set (None: nothing sent)."""
    credentials = Credentials(OPERATOR_USER, primary.env["SBO_OPERATOR_PASSWORD"])
    probed = asyncio.run(probe_instance(LOOPBACK, credentials, port=primary.port))
    assert probed.reachable, probed.error
    observed = probed_primary(primary.name, probed)
    policy = synchronous_policy(NAMES, NAMES, standbys=1, required=required)
    state = RolesState(phase=Phase.STABLE, current_primary=primary.name, timeline=probed.timeline)
    action = synchronous_setting([observed], state, policy)
    if action is None:
        return None
    assert asyncio.run(set_synchronous_standby_names(LOOPBACK, credentials, action.value, port=primary.port))
    return action.value


def shown(primary: Server) -> str:
    with primary.operator() as conn:
        row = conn.execute("SHOW synchronous_standby_names").fetchone()
    assert row is not None
    return str(row[0])


def timed_insert(primary: Server, row_id: int) -> tuple[float, list[str]]:
    """An INSERT as the app, cancelled after COMMIT_TIMEOUT_SECONDS: its seconds and the notices."""
    notices: list[str] = []
    with primary.app() as conn:
        conn.autocommit = True
        conn.add_notice_handler(lambda notice: notices.append(notice.message_primary or ""))
        cancel = threading.Timer(COMMIT_TIMEOUT_SECONDS, conn.cancel_safe)
        started = time.monotonic()
        cancel.start()
        try:
            conn.execute("INSERT INTO orders (id) VALUES (%s)", (row_id,))
        finally:
            cancel.cancel()
        return time.monotonic() - started, notices


@pytest.mark.parametrize("required", [False, True], ids=["not-required", "required"])
def test_a_missing_standby_lowers_the_wait_only_when_not_required(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,  # noqa: F811
    required: bool,
) -> None:
    cluster = start_cluster(sandbox, forwarder, size=2, synchronous_standbys=1)
    primary, standby = cluster.instances
    assert shown(primary) == ANY_1
    assert operator_pass(primary, required=required) is None, "steady: the ConfigMap's value, nothing sent"
    seconds, _ = timed_insert(primary, 1)
    assert seconds < 1

    assert standby.server is not None
    standby.server.kill()
    wait_until(lambda: streaming_standbys(primary) == set(), timeout=10, what="the standby gone")

    if required:
        assert operator_pass(primary, required=True) is None, "required: commits keep waiting"
        seconds, notices = timed_insert(primary, 2)
        assert seconds >= COMMIT_TIMEOUT_SECONDS - 0.1, "the commit waited for the missing standby"
        assert any("canceling wait for synchronous replication" in notice for notice in notices), notices
        assert shown(primary) == ANY_1
    else:
        assert operator_pass(primary, required=False) == ""
        wait_until(lambda: shown(primary) == "", timeout=10, what="the reloaded setting")
        assert operator_pass(primary, required=False) is None, "lowered once"
        seconds, notices = timed_insert(primary, 2)
        assert seconds < 1, "acknowledged without the missing standby"
        assert notices == []

    standby.start()
    wait_until(lambda: streaming_standbys(primary) == {standby.name}, timeout=30, what="the standby back")
    if required:
        assert operator_pass(primary, required=True) is None
    else:
        assert operator_pass(primary, required=False) == ANY_1
        wait_until(lambda: shown(primary) == ANY_1, timeout=10, what="ANY 1 again")
        assert operator_pass(primary, required=False) is None
    seconds, notices = timed_insert(primary, 3)
    assert seconds < 1
    assert notices == []
    with standby.app() as conn:
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM orders").fetchone() == (3,),
            timeout=10,
            what="every row on the standby",
        )


def test_the_setter_needs_no_more_than_the_operators_grants(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,  # noqa: F811
) -> None:
    """The empty value and a quoted one round-trip through ALTER SYSTEM as the probe reads them."""
    cluster = start_cluster(sandbox, forwarder, size=2, synchronous_standbys=1)
    primary = cluster.primary
    credentials = Credentials(OPERATOR_USER, primary.env["SBO_OPERATOR_PASSWORD"])
    for value in ("", ANY_1):
        assert asyncio.run(set_synchronous_standby_names(LOOPBACK, credentials, value, port=primary.port))
        wait_until(lambda value=value: shown(primary) == value, timeout=10, what=f"{value!r} applied")
        probed = asyncio.run(probe_instance(LOOPBACK, credentials, port=primary.port))
        assert probed.synchronous_standby_names == value
        assert probed.streaming_standbys == (NAMES[1],)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), primary.app() as conn:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
