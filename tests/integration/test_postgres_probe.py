"""The operator's probe of a server that shuts down, on real servers (loopback).

A fenced primary counts as stopped only once it no longer says "shutting down": until then its
fast shutdown may still be sending the last WAL to the standbys. Here the standby is SIGSTOPped,
so the primary's walsender cannot finish and its fast shutdown waits: the probe must say
SHUTTING_DOWN all that time, and REFUSED once the standby woke, took the last WAL and the primary
exited; by then the standby holds the primary's shutdown checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from devkit.process import wait_until
from sbo_operator.builders.postgres_config import OPERATOR_USER
from sbo_operator.postgres_probe import REFUSED, SHUTTING_DOWN, Credentials, InstanceProbe, probe_instance
from tests.integration.test_data_services_config import LOOPBACK, Sandbox
from tests.integration.test_postgres_failover_scripts import (
    Forwarder,
    forwarder,  # noqa: F401 - the fixture, shared
    probe,
    sandbox,  # noqa: F401 - the fixture, shared
    shutdown_checkpoint,
    start_cluster,
)
from tests.integration.test_postgres_failover_scripts import Instance as Server

pytestmark = pytest.mark.integration


def operator_probe(server: Server) -> InstanceProbe:
    credentials = Credentials(OPERATOR_USER, server.env["SBO_OPERATOR_PASSWORD"])
    return asyncio.run(probe_instance(LOOPBACK, credentials, port=server.port))


def test_a_server_shutting_down_says_so_until_its_standby_has_the_last_wal(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,  # noqa: F811
) -> None:
    cluster = start_cluster(sandbox, forwarder, size=2)
    primary, standby = cluster.instances
    assert primary.server is not None
    assert standby.server is not None
    assert operator_probe(primary).reachable

    os.killpg(standby.server.pid, signal.SIGSTOP)
    try:
        os.kill(primary.server.pid, signal.SIGINT)  # the pod's preStop: a fast shutdown
        wait_until(lambda: operator_probe(primary).error == SHUTTING_DOWN, timeout=10, what="shutting down")
        time.sleep(1)
        answer = operator_probe(primary)
        assert (answer.reachable, answer.error, answer.shutting_down) == (False, SHUTTING_DOWN, True)
        assert primary.server.running, "its walsender waits for the stopped standby"
    finally:
        os.killpg(standby.server.pid, signal.SIGCONT)

    assert primary.server.wait_exit(60) == 0
    answer = operator_probe(primary)
    assert (answer.reachable, answer.error, answer.shutting_down) == (False, REFUSED, False)
    assert probe(standby).lsn > shutdown_checkpoint(primary), "the standby has the last WAL"
