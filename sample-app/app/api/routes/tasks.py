"""Task Manager: tasks are created here and processed asynchronously by ``python -m app.worker``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from app import crud
from app.api.deps import (
    CacheDep,
    ConsistencyTokenDep,
    CurrentUser,
    DatabaseDep,
    ServicesDep,
    WriteSessionDep,
)
from app.api.entities import EntityKind, commit_write, get_own_for_update, read_entity
from app.core.config import API_V1_PREFIX
from app.core.redis_client import RedisUnavailable
from app.models import Task, TaskStatus
from app.schemas import MAX_ID, Message, Page, TaskCreate, TaskPublic, TaskUpdate

logger = logging.getLogger(__name__)

router = APIRouter(prefix=f"{API_V1_PREFIX}/tasks", tags=["tasks"])

TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Message, "description": "No such task"}}
NOT_OWNER: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    403: {"model": Message, "description": "The task belongs to someone else"},
}
TASKS = EntityKind(resource="task", model=Task, public=TaskPublic, not_found="Task not found")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskPublic)
async def create_task(
    task_in: TaskCreate,
    session: WriteSessionDep,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
) -> TaskPublic:
    """Store the task, then put it on the stream for the worker.

    If Redis is down the task is still created (``enqueued_at`` left empty); the worker's outbox
    sweep puts it on the stream later.
    """
    task = await crud.create_task(session, task_in, user.id)
    await commit_write(session, response, services)
    try:
        await services.queue.enqueue(task.id)
        services.metrics.tasks_enqueued.labels("ok").inc()
    except RedisUnavailable:
        services.metrics.tasks_enqueued.labels("deferred").inc()
        logger.warning("task %s stored but not enqueued: Redis unavailable", task.id)
        task.enqueued_at = None  # for the worker's outbox sweep
        await session.commit()
    return TaskPublic.model_validate(task)


@router.get("", response_model=Page[TaskPublic])
async def list_tasks(
    db: DatabaseDep,
    consistency: ConsistencyTokenDep,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    task_status: Annotated[TaskStatus | None, Query(alias="status")] = None,
) -> Page[TaskPublic]:
    """Newest first. Served by a replica (or the primary, if the replica is behind your last write)."""
    async with db.reader(consistency) as session:
        rows, count = await crud.list_tasks(
            session, offset=offset, limit=limit, status=task_status.value if task_status else None
        )
        data = [TaskPublic.model_validate(row) for row in rows]
    return Page[TaskPublic](data=data, count=count, offset=offset, limit=limit)


@router.get("/{task_id}", response_model=TaskPublic, responses=NOT_FOUND)
async def read_task(
    task_id: TaskId, db: DatabaseDep, cache: CacheDep, consistency: ConsistencyTokenDep
) -> Response:
    """Cache-aside: Redis first, then a replica (or the primary, for read-your-writes)."""
    return await read_entity(TASKS, task_id, db, cache, consistency)


@router.patch("/{task_id}", response_model=TaskPublic, responses=NOT_OWNER)
async def update_task(
    task_id: TaskId,
    task_in: TaskUpdate,
    session: WriteSessionDep,
    user: CurrentUser,
    services: ServicesDep,
    response: Response,
) -> TaskPublic:
    task = await get_own_for_update(TASKS, session, task_id, user)
    await crud.update_task(session, task, task_in)
    await commit_write(session, response, services, changed=TASKS.key(task_id))
    return TaskPublic.model_validate(task)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_OWNER)
async def delete_task(
    task_id: TaskId, session: WriteSessionDep, user: CurrentUser, services: ServicesDep, response: Response
) -> None:
    task = await get_own_for_update(TASKS, session, task_id, user)
    await session.delete(task)
    await commit_write(session, response, services, changed=TASKS.key(task_id))
