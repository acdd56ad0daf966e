"""Which of several operator replicas works: Kopf's peering decides, the runtime follows.

Invariant: a replica works (reconciles, writes, autoscales) only while Kopf has not paused
it, so of N peered replicas exactly one sends write requests. Kopf pauses a replica while a
live peer has a higher priority, and pauses every replica while two share the highest one;
so each replica's priority must differ: by default it is derived from its start time, and
the longest-running replica wins (a new replica of a rolling upgrade waits; a restarted one
does not take the work from the replica that kept it).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, cast


class PauseSignal(Protocol):
    """Kopf's "this operator is paused" state: on while paused."""

    def is_on(self) -> bool: ...

    async def wait_for(self, state: bool, /) -> None: ...


def start_time_priority(started_ns: int) -> int:
    """A replica's peering priority from its start (ns since the epoch): earlier is higher.

    Negative microseconds: two replicas never tie (a tie pauses both), and an operator run
    by hand with Kopf's `--dev` priority (666) still pauses every deployed replica.
    """
    return -(started_ns // 1000)


# Kopf (1.45) has no public way to ask whether peering paused the operator. kopf.spawn_tasks()
# keeps that state in a local ToggleSet, `operator_paused`, and hands it to its root task
# "daemon killer": aiotasks.guard(coro=daemons.daemon_killer(operator_paused=...)). This reads
# it from that task's (suspended) coroutines and changes nothing in Kopf;
# tests/unit/test_peering.py fails if Kopf renames or moves any of it.
KOPF_TASK_HOLDING_THE_PAUSE = "daemon killer"


def find_kopf_pause() -> PauseSignal:
    """Kopf's pause state of the operator running in this event loop (from a startup handler)."""
    for task in asyncio.all_tasks():
        if task.get_name() != KOPF_TASK_HOLDING_THE_PAUSE:
            continue
        guard: Any = task.get_coro()
        killer: Any = guard.cr_frame.f_locals["coro"]
        paused = killer.cr_frame.f_locals["operator_paused"]
        if not (callable(getattr(paused, "is_on", None)) and callable(getattr(paused, "wait_for", None))):
            raise RuntimeError(f"Kopf's operator_paused is not a toggle set: {paused!r}")
        return cast(PauseSignal, paused)
    raise RuntimeError(f"no Kopf task {KOPF_TASK_HOLDING_THE_PAUSE!r}: is Kopf running in this event loop?")
