"""The operator's probe of a server that shuts down, on real servers (loopback).

A fenced primary counts as stopped only once it no longer says "shutting down": until then its
shutdown may still be sending the last WAL to the standbys. Here a session keeps the primary in a
smart shutdown (SIGTERM) for as long as the test wants: the probe must say SHUTTING_DOWN all that
time, and REFUSED once the session ended and the server exited; by then the standby holds the
primary's shutdown checkpoint.
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


def test_a_server_shutting_down_says_so_until_it_has_stopped(
    sandbox: Sandbox,  # noqa: F811
    forwarder: Forwarder,  # noqa: F811
) -> None:
    cluster = start_cluster(sandbox, forwarder, size=2)
    primary, standby = cluster.instances
    assert primary.server is not None
    assert standby.server is not None
    assert operator_probe(primary).reachable

    with primary.app() as session:
        os.kill(primary.server.pid, signal.SIGTERM)  # a smart shutdown waits for the session
        wait_until(lambda: operator_probe(primary).error == SHUTTING_DOWN, timeout=10, what="shutting down")
        time.sleep(1)
        answer = operator_probe(primary)
        assert (answer.reachable, answer.error, answer.shutting_down) == (False, SHUTTING_DOWN, True)
        assert primary.server.running
        session.execute("SELECT 1")

    assert primary.server.wait_exit(60) == 0
    answer = operator_probe(primary)
    assert (answer.reachable, answer.error, answer.shutting_down) == (False, REFUSED, False)
    assert probe(standby).lsn > shutdown_checkpoint(primary), "the standby has the last WAL"
